//! The versioned encoding of everything Cairn persists or sends: one format-version byte, then
//! the postcard encoding of the value. Each persisted type names its current version; decoding a
//! record of an unknown version is an error, never a guess.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type that is written to disk or the wire with a version tag.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The format version written by this build.
    const FORMAT: u8;
    /// What the record is, for error messages.
    const WHAT: &'static str;

    /// Version byte followed by the postcard encoding.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![Self::FORMAT];
        // postcard cannot fail writing to a Vec except on types serde cannot describe.
        out.extend(postcard::to_allocvec(self).expect("postcard encodes serde types"));
        out
    }

    /// Decodes the body of a record written by an older build in format `version`, or `None`
    /// if this build does not read that format. Types whose format changed override this.
    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        let _ = (version, body);
        None
    }

    /// Decodes a record written by [`Versioned::encode`] (of this or an older build).
    fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        match bytes.split_first() {
            None => Err(FormatError::Empty { what: Self::WHAT }),
            Some((&v, rest)) if v == Self::FORMAT => decode_body(Self::WHAT, rest),
            Some((&v, rest)) => match Self::decode_older(v, rest) {
                Some(r) => r,
                None => Err(FormatError::UnknownVersion {
                    what: Self::WHAT,
                    found: v,
                    supported: Self::FORMAT,
                }),
            },
        }
    }
}

/// The postcard body of a record of kind `what`.
pub fn decode_body<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, FormatError> {
    postcard::from_bytes(body).map_err(|e| FormatError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// A record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Zero-length input.
    #[error("{what}: empty record")]
    Empty {
        /// Record kind.
        what: &'static str,
    },
    /// Written by a newer (or unknown) format.
    #[error("{what}: format version {found} is not supported (this build reads {supported}); upgrade cairn")]
    UnknownVersion {
        /// Record kind.
        what: &'static str,
        /// Version byte found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// Bytes do not decode.
    #[error("{what}: corrupt record: {reason}")]
    Corrupt {
        /// Record kind.
        what: &'static str,
        /// Decoder's message.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        a: u32,
        b: String,
    }
    impl Versioned for Rec {
        const FORMAT: u8 = 3;
        const WHAT: &'static str = "rec";
    }

    #[test]
    fn round_trip_and_rejects_other_versions() {
        let r = Rec {
            a: 7,
            b: "x".into(),
        };
        let mut e = r.encode();
        assert_eq!(e[0], 3);
        assert_eq!(Rec::decode(&e).unwrap(), r);
        e[0] = 4;
        assert!(matches!(
            Rec::decode(&e),
            Err(FormatError::UnknownVersion { found: 4, .. })
        ));
        assert!(matches!(Rec::decode(&[]), Err(FormatError::Empty { .. })));
        assert!(matches!(
            Rec::decode(&[3, 0xff]),
            Err(FormatError::Corrupt { .. })
        ));
    }
}
