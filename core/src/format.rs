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

    /// Decodes a record written by [`Versioned::encode`].
    fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        match bytes.split_first() {
            None => Err(FormatError::Empty { what: Self::WHAT }),
            Some((&v, rest)) if v == Self::FORMAT => {
                postcard::from_bytes(rest).map_err(|e| FormatError::Corrupt {
                    what: Self::WHAT,
                    reason: e.to_string(),
                })
            }
            Some((&v, _)) => Err(FormatError::UnknownVersion {
                what: Self::WHAT,
                found: v,
                supported: Self::FORMAT,
            }),
        }
    }
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
