//! Text keys (RFC 7143 §6 and §13): `key=value` pairs separated by NULs, and the negotiation
//! of the operational parameters of a session.

use std::fmt::Write as _;

/// Largest text (login or text request data, continuations joined) accepted from an initiator.
pub(crate) const MAX_TEXT_LEN: usize = 64 << 10;
/// Longest key name (RFC 7143 §6.1: 63 bytes).
const MAX_KEY_LEN: usize = 63;
/// Longest value: 255 bytes for most keys, but CHAP's binary values may be longer.
const MAX_VALUE_LEN: usize = 8192;
/// Most keys in one text.
const MAX_KEYS: usize = 256;

/// Why a text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TextError {
    #[error("text is {0} bytes, over the {MAX_TEXT_LEN}-byte limit")]
    TooLong(usize),
    #[error("text has a pair without '=': {0:?}")]
    NoEquals(String),
    #[error("text key {0:?} is empty, too long or has characters keys cannot have")]
    BadKey(String),
    #[error("value of {0} is over {MAX_VALUE_LEN} bytes")]
    ValueTooLong(String),
    #[error("text has more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("key {0} is sent twice")]
    Repeated(String),
    #[error("text is not UTF-8")]
    NotUtf8,
}

/// Parses `key=value\0key=value\0...` (the last NUL may be missing) into pairs, in order.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    if data.len() > MAX_TEXT_LEN {
        return Err(TextError::TooLong(data.len()));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for item in data.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let item = std::str::from_utf8(item).map_err(|_| TextError::NotUtf8)?;
        let Some((key, value)) = item.split_once('=') else {
            return Err(TextError::NoEquals(item.chars().take(64).collect()));
        };
        if key.is_empty()
            || key.len() > MAX_KEY_LEN
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '@' | '_'))
        {
            return Err(TextError::BadKey(key.chars().take(64).collect()));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(TextError::ValueTooLong(key.to_string()));
        }
        if out.len() == MAX_KEYS {
            return Err(TextError::TooManyKeys);
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(TextError::Repeated(key.to_string()));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Encodes pairs as `key=value\0...`.
pub(crate) fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in pairs {
        let _ = write!(s, "{k}={v}\0");
    }
    s.into_bytes()
}

/// What the target offers and accepts (its side of every negotiation).
#[derive(Debug, Clone)]
pub(crate) struct TargetLimits {
    /// Largest data segment the target receives (declared to the initiator).
    pub(crate) max_recv_data_segment_length: u32,
    pub(crate) max_burst_length: u32,
    pub(crate) first_burst_length: u32,
    pub(crate) max_outstanding_r2t: u16,
    pub(crate) initial_r2t: bool,
    pub(crate) immediate_data: bool,
}

/// The operational parameters of a session, as negotiated (RFC 7143 §13 defaults until then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) header_digest: bool,
    pub(crate) data_digest: bool,
    pub(crate) max_connections: u16,
    pub(crate) initial_r2t: bool,
    pub(crate) immediate_data: bool,
    /// The initiator's: the largest data segment the target may send it.
    pub(crate) initiator_max_recv: u32,
    /// The target's own, as declared.
    pub(crate) target_max_recv: u32,
    pub(crate) max_burst_length: u32,
    pub(crate) first_burst_length: u32,
    pub(crate) default_time2wait: u16,
    pub(crate) default_time2retain: u16,
    pub(crate) max_outstanding_r2t: u16,
    pub(crate) data_pdu_in_order: bool,
    pub(crate) data_sequence_in_order: bool,
    pub(crate) error_recovery_level: u8,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            initiator_max_recv: 8192,
            target_max_recv: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// Keys handled outside [`Params::negotiate`] (identity, authentication, the session type).
const DECLARATIVE: &[&str] = &[
    "InitiatorName",
    "InitiatorAlias",
    "TargetName",
    "SessionType",
    "AuthMethod",
    "CHAP_A",
    "CHAP_I",
    "CHAP_C",
    "CHAP_N",
    "CHAP_R",
];

fn parse_num(v: &str, min: u32, max: u32) -> Option<u32> {
    let n: u32 = if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 10 {
            return None;
        }
        v.parse().ok()?
    };
    (min..=max).contains(&n).then_some(n)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

fn digest(v: &str) -> Option<bool> {
    v.split(',').find_map(|d| match d {
        "CRC32C" => Some(true),
        "None" => Some(false),
        _ => None,
    })
}

impl Params {
    /// Negotiates the operational keys among `pairs` (others are skipped: see
    /// [`is_operational`]), updating `self`, and returns the answer for each, in order. Values
    /// that cannot be parsed or are out of range are answered `Reject` and leave the parameter
    /// as it was; unknown keys are answered `NotUnderstood`.
    pub(crate) fn negotiate(
        &mut self,
        pairs: &[(String, String)],
        limits: &TargetLimits,
    ) -> Vec<(String, String)> {
        let mut answers: Vec<(String, Option<String>)> = Vec::new();
        for (key, v) in pairs {
            if DECLARATIVE.contains(&key.as_str()) {
                continue;
            }
            let answer: Option<String> = match key.as_str() {
                "HeaderDigest" => digest(v).map(|d| {
                    self.header_digest = d;
                    if d { "CRC32C" } else { "None" }.to_string()
                }),
                "DataDigest" => digest(v).map(|d| {
                    self.data_digest = d;
                    if d { "CRC32C" } else { "None" }.to_string()
                }),
                "MaxConnections" => parse_num(v, 1, 65535).map(|_| {
                    // One connection per session: a second login with this session's TSIH is
                    // refused.
                    self.max_connections = 1;
                    "1".to_string()
                }),
                "InitialR2T" => parse_bool(v).map(|b| {
                    self.initial_r2t = b || limits.initial_r2t;
                    yes_no(self.initial_r2t)
                }),
                "ImmediateData" => parse_bool(v).map(|b| {
                    self.immediate_data = b && limits.immediate_data;
                    yes_no(self.immediate_data)
                }),
                "MaxRecvDataSegmentLength" => parse_num(v, 512, (1 << 24) - 1).map(|n| {
                    // Declarative: the initiator's own limit; the target declares its own.
                    self.initiator_max_recv = n;
                    String::new()
                }),
                "MaxBurstLength" => parse_num(v, 512, (1 << 24) - 1).map(|n| {
                    self.max_burst_length = n.min(limits.max_burst_length);
                    String::new()
                }),
                "FirstBurstLength" => parse_num(v, 512, (1 << 24) - 1).map(|n| {
                    self.first_burst_length = n.min(limits.first_burst_length);
                    String::new()
                }),
                "DefaultTime2Wait" => parse_num(v, 0, 3600).map(|n| {
                    self.default_time2wait = n as u16;
                    n.to_string()
                }),
                "DefaultTime2Retain" => parse_num(v, 0, 3600).map(|_| {
                    // Error recovery level 0 keeps nothing for a reconnect.
                    self.default_time2retain = 0;
                    "0".to_string()
                }),
                "MaxOutstandingR2T" => parse_num(v, 1, 65535).map(|n| {
                    self.max_outstanding_r2t = (n as u16).min(limits.max_outstanding_r2t);
                    self.max_outstanding_r2t.to_string()
                }),
                "DataPDUInOrder" => parse_bool(v).map(|_| {
                    // Data is taken in order only: "Yes" whatever was offered (OR).
                    self.data_pdu_in_order = true;
                    yes_no(true)
                }),
                "DataSequenceInOrder" => parse_bool(v).map(|_| {
                    self.data_sequence_in_order = true;
                    yes_no(true)
                }),
                "ErrorRecoveryLevel" => parse_num(v, 0, 2).map(|_| {
                    self.error_recovery_level = 0;
                    "0".to_string()
                }),
                "IFMarker" | "OFMarker" => parse_bool(v).map(|_| yes_no(false)),
                "IFMarkInt" | "OFMarkInt" => Some("Irrelevant".to_string()),
                _ => Some("NotUnderstood".to_string()),
            };
            answers.push((
                key.clone(),
                Some(answer.unwrap_or_else(|| "Reject".to_string())),
            ));
        }
        // FirstBurstLength never exceeds MaxBurstLength; the numbers are answered once both
        // are known.
        self.first_burst_length = self.first_burst_length.min(self.max_burst_length);
        answers
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v?;
                let v = match (k.as_str(), v.is_empty()) {
                    ("MaxBurstLength", true) => self.max_burst_length.to_string(),
                    ("FirstBurstLength", true) => self.first_burst_length.to_string(),
                    // Declarations get no answer.
                    ("MaxRecvDataSegmentLength", true) => return None,
                    _ => v,
                };
                Some((k, v))
            })
            .collect()
    }
}

/// Whether `key` is one that [`Params::negotiate`] answers (anything but identity and
/// authentication keys).
pub(crate) fn is_operational(key: &str) -> bool {
    !DECLARATIVE.contains(&key)
}

/// Whether `name` is a well-formed iSCSI name (RFC 3720 §3.2.6.3): `iqn.YYYY-MM.…`, `eui.`
/// with 16 hex digits, or `naa.` with 16 or 32.
pub(crate) fn valid_iscsi_name(name: &str) -> bool {
    if name.len() > 223 {
        return false;
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        let date_ok = rest.len() > 8
            && rest.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[4] == b'-'
            && rest.as_bytes()[5..7].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[7] == b'.';
        return date_ok
            && rest.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':')
            });
    }
    let hex_len = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit()).then_some(s.len());
    if let Some(rest) = name.strip_prefix("eui.") {
        return hex_len(rest) == Some(16);
    }
    if let Some(rest) = name.strip_prefix("naa.") {
        return matches!(hex_len(rest), Some(16 | 32));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        parse(s.as_bytes()).unwrap()
    }

    fn limits() -> TargetLimits {
        TargetLimits {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1 << 20,
            first_burst_length: 65_536,
            max_outstanding_r2t: 8,
            initial_r2t: false,
            immediate_data: true,
        }
    }

    #[test]
    fn text_parses_in_order_and_refuses_malformed_pairs() {
        assert_eq!(
            pairs("A=1\0B=x=y\0C=\0"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
        assert_eq!(pairs("A=1"), vec![("A".into(), "1".into())]);
        assert!(matches!(parse(b"A\0"), Err(TextError::NoEquals(_))));
        assert!(matches!(parse(b"=1\0"), Err(TextError::BadKey(_))));
        assert!(matches!(parse(b"A=1\0A=2\0"), Err(TextError::Repeated(_))));
        assert!(matches!(
            parse(&[b'A', b'=', 0xff]),
            Err(TextError::NotUtf8)
        ));
        assert!(matches!(
            parse(&vec![b'a'; MAX_TEXT_LEN + 1]),
            Err(TextError::TooLong(_))
        ));
        let long = format!("K={}", "v".repeat(MAX_VALUE_LEN + 1));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(TextError::ValueTooLong(_))
        ));
        assert_eq!(encode(&pairs("A=1\0B=2")), b"A=1\0B=2\0");
    }

    #[test]
    fn negotiation_follows_each_keys_rule() {
        let mut p = Params::default();
        let answers = p.negotiate(
            &pairs(
                "InitiatorName=iqn.2000-01.x:y\0HeaderDigest=CRC32C,None\0DataDigest=None\0\
                 InitialR2T=Yes\0ImmediateData=Yes\0MaxRecvDataSegmentLength=131072\0\
                 MaxBurstLength=16776192\0FirstBurstLength=262144\0MaxOutstandingR2T=16\0\
                 ErrorRecoveryLevel=2\0MaxConnections=4\0X-Vendor=1\0DefaultTime2Wait=abc\0",
            ),
            &limits(),
        );
        let get = |k: &str| {
            answers
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("InitiatorName"), None);
        assert_eq!(get("HeaderDigest"), Some("CRC32C"));
        assert_eq!(get("DataDigest"), Some("None"));
        assert_eq!(get("InitialR2T"), Some("Yes"));
        assert_eq!(get("ImmediateData"), Some("Yes"));
        assert_eq!(get("MaxRecvDataSegmentLength"), None);
        assert_eq!(get("MaxBurstLength"), Some("1048576"));
        assert_eq!(get("FirstBurstLength"), Some("65536"));
        assert_eq!(get("MaxOutstandingR2T"), Some("8"));
        assert_eq!(get("ErrorRecoveryLevel"), Some("0"));
        assert_eq!(get("MaxConnections"), Some("1"));
        assert_eq!(get("X-Vendor"), Some("NotUnderstood"));
        assert_eq!(get("DefaultTime2Wait"), Some("Reject"));
        assert!(p.header_digest && !p.data_digest && p.initial_r2t && p.immediate_data);
        assert_eq!(p.initiator_max_recv, 131_072);
        assert_eq!(
            (p.max_burst_length, p.first_burst_length),
            (1 << 20, 65_536)
        );

        // FirstBurstLength is cut to MaxBurstLength even when offered first.
        let mut p = Params::default();
        let answers = p.negotiate(
            &pairs("FirstBurstLength=65536\0MaxBurstLength=4096\0"),
            &limits(),
        );
        assert_eq!(answers[0].1, "4096");
        assert_eq!(answers[1].1, "4096");
        // Out-of-range numbers and bad booleans are rejected and change nothing.
        let mut p = Params::default();
        let answers = p.negotiate(
            &pairs("MaxRecvDataSegmentLength=100\0InitialR2T=maybe\0HeaderDigest=MD5\0"),
            &limits(),
        );
        assert!(answers.iter().all(|(_, v)| v == "Reject"));
        assert_eq!(p, Params::default());
    }

    #[test]
    fn iscsi_names_are_checked() {
        assert!(valid_iscsi_name("iqn.2026-12.dev.cairn:site:vol-1"));
        assert!(valid_iscsi_name("eui.02004567A425678D"));
        assert!(valid_iscsi_name("naa.52004567BA64678D"));
        assert!(!valid_iscsi_name("Alle"));
        assert!(!valid_iscsi_name("iqn.2026.dev"));
        assert!(!valid_iscsi_name("iqn.2026-12.Dev"));
        assert!(!valid_iscsi_name("eui.123"));
    }

    /// Bounded property test: any bytes parse or fail cleanly, and whatever parses encodes
    /// back to text that parses to the same pairs; negotiation of any parsed pairs keeps
    /// FirstBurstLength within MaxBurstLength.
    #[test]
    fn any_text_parses_or_fails_cleanly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"=\0,abcXYZ019-.:_ \xff";
        for _ in 0..20_000 {
            let n = rng.gen_range(0..64);
            let data: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if let Ok(pairs) = parse(&data) {
                assert_eq!(parse(&encode(&pairs)).unwrap(), pairs);
                let mut p = Params::default();
                p.negotiate(&pairs, &limits());
                assert!(p.first_burst_length <= p.max_burst_length);
            }
        }
    }
}
