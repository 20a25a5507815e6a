//! `Condition` blocks of bucket policies, as IAM evaluates them.
//!
//! A block maps condition operators to `{key: value or values}`; every operator of a block and
//! every key under an operator must hold (AND), and a key holds when the request's value
//! matches any of the listed values (OR), or, for the negated operators (`StringNotEquals`,
//! `NotIpAddress`, ...), matches none of them. A key the request does not carry makes a
//! condition false, except under a negated operator or with the `IfExists` suffix (true) and
//! for `Null` (which tests exactly that). `ForAnyValue:` and `ForAllValues:` compare keys with
//! several values (request tag keys).
//!
//! Only keys the gateway fills in are accepted ([`KNOWN_KEYS`] and the tag keys): a policy
//! naming another key is refused when it is put, since a condition on a key the request never
//! carries would silently turn a Deny off.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::policy::PolicyError;

/// Condition keys the gateway sets on a request (lowercase; IAM keys are case-insensitive).
const KNOWN_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:securetransport",
    "aws:currenttime",
    "aws:epochtime",
    "aws:referer",
    "aws:useragent",
    "aws:username",
    "aws:userid",
    "aws:principaltype",
    "s3:prefix",
    "s3:delimiter",
    "s3:max-keys",
    "s3:versionid",
    "s3:x-amz-acl",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:x-amz-content-sha256",
    "s3:x-amz-copy-source",
    "s3:x-amz-metadata-directive",
    "s3:x-amz-storage-class",
    "s3:signatureversion",
    "s3:authtype",
    "s3:requestobjecttagkeys",
];

/// Tag keys: the tag's name follows the slash.
const TAG_KEY_PREFIXES: &[&str] = &["s3:existingobjecttag/", "s3:requestobjecttag/"];

/// Most operator/key pairs in one statement's block.
const MAX_CONDITIONS: usize = 64;

/// What a request says about itself: each condition key (lowercase) with its values.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestContext {
    values: HashMap<String, Vec<String>>,
}

impl RequestContext {
    /// Sets `key` (any case) to `values`.
    pub(crate) fn set(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_ascii_lowercase(), values);
    }

    /// Sets `key` to one value.
    pub(crate) fn set_one(&mut self, key: &str, value: impl Into<String>) {
        self.set(key, vec![value.into()]);
    }

    fn get(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    StringEquals { ignore_case: bool },
    StringLike,
    Numeric(Ordering),
    Date(Ordering),
    Bool,
    IpAddress,
    Null,
}

/// How a request's value compares with a policy's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ordering {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetOp {
    /// The key has one value (or the first that matches counts).
    Single,
    /// At least one of the request's values matches.
    ForAnyValue,
    /// Every one of the request's values matches (true when it has none).
    ForAllValues,
}

/// One `operator: {key: values}` entry.
#[derive(Clone, Debug)]
pub(crate) struct Condition {
    kind: Kind,
    negated: bool,
    if_exists: bool,
    set: SetOp,
    key: String,
    values: Vec<String>,
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

/// Parses a statement's `Condition` block.
pub(crate) fn parse_block(block: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = block else {
        return Err(malformed("Condition must be an object of operators"));
    };
    let mut out = Vec::new();
    for (op, keys) in ops {
        let (set, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
            (SetOp::ForAnyValue, r)
        } else if let Some(r) = op.strip_prefix("ForAllValues:") {
            (SetOp::ForAllValues, r)
        } else {
            (SetOp::Single, op.as_str())
        };
        let (name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(n) if n != "Null" => (n, true),
            _ => (rest, false),
        };
        let (kind, negated) = operator(name).ok_or_else(|| {
            PolicyError::Unsupported(format!(
                "condition operator `{op}` is not supported: use String*, Numeric*, Date*, \
                 Bool, IpAddress, NotIpAddress or Null (with IfExists, ForAnyValue: or \
                 ForAllValues: where IAM allows them)"
            ))
        })?;
        let Value::Object(keys) = keys else {
            return Err(malformed(format!(
                "condition operator `{op}` must map condition keys to values"
            )));
        };
        if keys.is_empty() {
            return Err(malformed(format!("condition operator `{op}` has no keys")));
        }
        for (key, value) in keys {
            let key = key.to_ascii_lowercase();
            check_key(&key)?;
            let values = values_of(value, op, &key)?;
            for v in &values {
                check_value(kind, v, op)?;
            }
            out.push(Condition {
                kind,
                negated,
                if_exists,
                set,
                key,
                values,
            });
            if out.len() > MAX_CONDITIONS {
                return Err(malformed(format!(
                    "a statement has more than {MAX_CONDITIONS} conditions"
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(malformed("Condition has no operators"));
    }
    Ok(out)
}

/// The kind of an operator name (without IfExists and set prefixes), and whether it negates.
fn operator(name: &str) -> Option<(Kind, bool)> {
    use Ordering::*;
    let ordering = |rest: &str| match rest {
        "Equals" => Some((Equals, false)),
        "NotEquals" => Some((Equals, true)),
        "LessThan" => Some((LessThan, false)),
        "LessThanEquals" => Some((LessThanEquals, false)),
        "GreaterThan" => Some((GreaterThan, false)),
        "GreaterThanEquals" => Some((GreaterThanEquals, false)),
        _ => None,
    };
    Some(match name {
        "StringEquals" => (Kind::StringEquals { ignore_case: false }, false),
        "StringNotEquals" => (Kind::StringEquals { ignore_case: false }, true),
        "StringEqualsIgnoreCase" => (Kind::StringEquals { ignore_case: true }, false),
        "StringNotEqualsIgnoreCase" => (Kind::StringEquals { ignore_case: true }, true),
        "StringLike" => (Kind::StringLike, false),
        "StringNotLike" => (Kind::StringLike, true),
        "Bool" => (Kind::Bool, false),
        "IpAddress" => (Kind::IpAddress, false),
        "NotIpAddress" => (Kind::IpAddress, true),
        "Null" => (Kind::Null, false),
        _ => {
            if let Some(rest) = name.strip_prefix("Numeric") {
                let (o, neg) = ordering(rest)?;
                (Kind::Numeric(o), neg)
            } else if let Some(rest) = name.strip_prefix("Date") {
                let (o, neg) = ordering(rest)?;
                (Kind::Date(o), neg)
            } else {
                return None;
            }
        }
    })
}

fn check_key(key: &str) -> Result<(), PolicyError> {
    let tag = TAG_KEY_PREFIXES
        .iter()
        .any(|p| key.strip_prefix(p).is_some_and(|t| !t.is_empty()));
    if tag || KNOWN_KEYS.contains(&key) {
        Ok(())
    } else {
        Err(PolicyError::Unsupported(format!(
            "condition key `{key}` is not supported: this gateway sets {} and \
             s3:ExistingObjectTag/KEY, s3:RequestObjectTag/KEY",
            KNOWN_KEYS.join(", ")
        )))
    }
}

/// A condition's values as strings (IAM takes strings, numbers and booleans alike).
fn values_of(value: &Value, op: &str, key: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let values = match value {
        Value::Array(items) => items.iter().map(one).collect::<Option<Vec<_>>>(),
        v => one(v).map(|s| vec![s]),
    }
    .ok_or_else(|| {
        malformed(format!(
            "`{op}` on `{key}` must give a string, number, boolean or a list of them"
        ))
    })?;
    if values.is_empty() {
        return Err(malformed(format!("`{op}` on `{key}` gives no values")));
    }
    Ok(values)
}

/// Refuses values an operator can never compare (a bad CIDR or date), at put time.
fn check_value(kind: Kind, v: &str, op: &str) -> Result<(), PolicyError> {
    let ok = match kind {
        Kind::Numeric(_) => v.parse::<f64>().is_ok(),
        Kind::Date(_) => date_ms(v).is_some(),
        Kind::Bool | Kind::Null => matches!(v.to_ascii_lowercase().as_str(), "true" | "false"),
        Kind::IpAddress => cidr(v).is_some(),
        Kind::StringEquals { .. } | Kind::StringLike => true,
    };
    if ok {
        Ok(())
    } else {
        Err(malformed(format!("`{v}` is not a valid value for `{op}`")))
    }
}

/// Whether every condition holds for `ctx`.
pub(crate) fn all_hold(conditions: &[Condition], ctx: &RequestContext) -> bool {
    conditions.iter().all(|c| c.holds(ctx))
}

/// Whether the conditions limit who may use a statement to fixed source addresses (a
/// policy whose every Allow to everyone is so limited is not public, as S3 judges it).
pub(crate) fn limits_source(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.kind == Kind::IpAddress && !c.negated && c.key == "aws:sourceip")
}

/// Whether any condition is about an existing object's tags (the authorizer then reads them).
pub(crate) fn needs_existing_tags(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.key.starts_with("s3:existingobjecttag/"))
}

impl Condition {
    fn holds(&self, ctx: &RequestContext) -> bool {
        let got = ctx.get(&self.key);
        if self.kind == Kind::Null {
            let absent = got.is_none_or(<[String]>::is_empty);
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let got = match got {
            Some(v) if !v.is_empty() => v,
            _ => {
                return match self.set {
                    // Vacuously true, as IAM has it.
                    SetOp::ForAllValues => true,
                    _ => self.negated || self.if_exists,
                };
            }
        };
        let matches_one = |g: &String| self.values.iter().any(|v| self.compare(g, v));
        let matched = match self.set {
            SetOp::ForAllValues => got.iter().all(matches_one),
            SetOp::Single | SetOp::ForAnyValue => got.iter().any(matches_one),
        };
        matched != self.negated
    }

    /// Whether the request's value `got` matches the policy's `want` (before negation).
    fn compare(&self, got: &str, want: &str) -> bool {
        match self.kind {
            Kind::StringEquals { ignore_case: false } => got == want,
            Kind::StringEquals { ignore_case: true } => got.eq_ignore_ascii_case(want),
            Kind::StringLike => crate::policy::glob(want, got),
            Kind::Bool => got.eq_ignore_ascii_case(want),
            Kind::Numeric(o) => match (got.parse::<f64>(), want.parse::<f64>()) {
                (Ok(g), Ok(w)) => ordered(o, g.partial_cmp(&w)),
                _ => false,
            },
            Kind::Date(o) => match (date_ms(got), date_ms(want)) {
                (Some(g), Some(w)) => ordered(o, Some(g.cmp(&w))),
                _ => false,
            },
            Kind::IpAddress => match (got.parse::<IpAddr>(), cidr(want)) {
                (Ok(ip), Some((net, bits))) => in_network(ip, net, bits),
                _ => false,
            },
            Kind::Null => false,
        }
    }
}

fn ordered(o: Ordering, c: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering as C;
    let Some(c) = c else { return false };
    match o {
        Ordering::Equals => c == C::Equal,
        Ordering::LessThan => c == C::Less,
        Ordering::LessThanEquals => c != C::Greater,
        Ordering::GreaterThan => c == C::Greater,
        Ordering::GreaterThanEquals => c != C::Less,
    }
}

/// A date as IAM writes them: ISO 8601 (`2026-12-07T10:00:00Z`, or a plain date) or epoch
/// seconds; unix milliseconds.
pub(crate) fn date_ms(v: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(secs) = v.parse::<i64>() {
        return Some(i128::from(secs) * 1000);
    }
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t.unix_timestamp_nanos() / 1_000_000);
    }
    let date = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"));
    date.ok()
        .map(|d| i128::from(d.midnight().assume_utc().unix_timestamp()) * 1000)
}

/// `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128).
fn cidr(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match v.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (v, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    // An IPv4 client on an IPv6 socket is compared as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Reads a statement's optional `Condition` (an absent one holds always).
pub(crate) fn parse_statement_conditions(
    s: &Map<String, Value>,
) -> Result<Vec<Condition>, PolicyError> {
    match s.get("Condition") {
        None => Ok(Vec::new()),
        Some(block) => parse_block(block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(json: &str) -> Vec<Condition> {
        parse_block(&serde_json::from_str(json).unwrap()).unwrap()
    }

    fn ctx(pairs: &[(&str, &[&str])]) -> RequestContext {
        let mut c = RequestContext::default();
        for (k, v) in pairs {
            c.set(k, v.iter().map(|s| s.to_string()).collect());
        }
        c
    }

    #[test]
    fn strings_match_any_value_and_negations_match_none() {
        let c = block(r#"{"StringEquals": {"s3:prefix": ["home/", "pub/"]}}"#);
        assert!(all_hold(&c, &ctx(&[("s3:prefix", &["pub/"])])));
        assert!(!all_hold(&c, &ctx(&[("s3:prefix", &["etc/"])])));
        assert!(!all_hold(&c, &ctx(&[])), "a missing key fails");
        let c = block(r#"{"StringNotEquals": {"s3:prefix": ["home/", "pub/"]}}"#);
        assert!(all_hold(&c, &ctx(&[("s3:prefix", &["etc/"])])));
        assert!(!all_hold(&c, &ctx(&[("s3:prefix", &["home/"])])));
        assert!(all_hold(&c, &ctx(&[])), "a missing key holds when negated");
        let c = block(r#"{"StringLike": {"aws:Referer": "https://*.example.com/*"}}"#);
        assert!(all_hold(
            &c,
            &ctx(&[("aws:referer", &["https://www.example.com/a"])])
        ));
        assert!(!all_hold(
            &c,
            &ctx(&[("aws:referer", &["https://evil.org/"])])
        ));
        let c = block(r#"{"StringEqualsIgnoreCase": {"s3:x-amz-acl": "PRIVATE"}}"#);
        assert!(all_hold(&c, &ctx(&[("s3:x-amz-acl", &["private"])])));
        let c = block(r#"{"StringEqualsIfExists": {"s3:x-amz-server-side-encryption": "AES256"}}"#);
        assert!(all_hold(&c, &ctx(&[])));
        assert!(!all_hold(
            &c,
            &ctx(&[("s3:x-amz-server-side-encryption", &["aws:kms"])])
        ));
    }

    #[test]
    fn every_operator_and_key_must_hold() {
        let c = block(
            r#"{"StringEquals": {"s3:prefix": "a/", "s3:delimiter": "/"},
                "NumericLessThanEquals": {"s3:max-keys": 10}}"#,
        );
        let full = ctx(&[
            ("s3:prefix", &["a/"]),
            ("s3:delimiter", &["/"]),
            ("s3:max-keys", &["10"]),
        ]);
        assert!(all_hold(&c, &full));
        let more = ctx(&[
            ("s3:prefix", &["a/"]),
            ("s3:delimiter", &["/"]),
            ("s3:max-keys", &["11"]),
        ]);
        assert!(!all_hold(&c, &more));
        let no_delim = ctx(&[("s3:prefix", &["a/"]), ("s3:max-keys", &["1"])]);
        assert!(!all_hold(&c, &no_delim));
    }

    #[test]
    fn addresses_dates_booleans_and_null() {
        let c = block(r#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#);
        assert!(all_hold(&c, &ctx(&[("aws:sourceip", &["10.1.2.3"])])));
        assert!(all_hold(
            &c,
            &ctx(&[("aws:sourceip", &["::ffff:10.9.9.9"])])
        ));
        assert!(all_hold(&c, &ctx(&[("aws:sourceip", &["2001:db8:1::5"])])));
        assert!(!all_hold(&c, &ctx(&[("aws:sourceip", &["192.168.1.1"])])));
        let c = block(r#"{"NotIpAddress": {"aws:SourceIp": "127.0.0.1"}}"#);
        assert!(!all_hold(&c, &ctx(&[("aws:sourceip", &["127.0.0.1"])])));
        assert!(all_hold(&c, &ctx(&[("aws:sourceip", &["127.0.0.2"])])));

        let c = block(r#"{"DateLessThan": {"aws:CurrentTime": "2026-12-31T00:00:00Z"}}"#);
        assert!(all_hold(
            &c,
            &ctx(&[("aws:currenttime", &["2026-12-07T10:00:00Z"])])
        ));
        assert!(!all_hold(
            &c,
            &ctx(&[("aws:currenttime", &["2027-01-01T00:00:00Z"])])
        ));
        let c = block(r#"{"DateGreaterThanEquals": {"aws:EpochTime": "2026-12-07"}}"#);
        assert!(all_hold(&c, &ctx(&[("aws:epochtime", &["1796601600"])])));

        let c = block(r#"{"Bool": {"aws:SecureTransport": "false"}}"#);
        assert!(all_hold(&c, &ctx(&[("aws:securetransport", &["false"])])));
        assert!(!all_hold(&c, &ctx(&[("aws:securetransport", &["true"])])));
        let c = block(r#"{"Null": {"s3:x-amz-server-side-encryption": "true"}}"#);
        assert!(all_hold(&c, &ctx(&[])));
        assert!(!all_hold(
            &c,
            &ctx(&[("s3:x-amz-server-side-encryption", &["AES256"])])
        ));
    }

    #[test]
    fn set_operators_compare_every_value() {
        let c =
            block(r#"{"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}}"#);
        assert!(all_hold(&c, &ctx(&[("s3:requestobjecttagkeys", &["env"])])));
        assert!(!all_hold(
            &c,
            &ctx(&[("s3:requestobjecttagkeys", &["env", "cost"])])
        ));
        assert!(all_hold(&c, &ctx(&[])), "vacuously true");
        let c = block(r#"{"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "secret"}}"#);
        assert!(all_hold(
            &c,
            &ctx(&[("s3:requestobjecttagkeys", &["a", "secret"])])
        ));
        assert!(!all_hold(&c, &ctx(&[("s3:requestobjecttagkeys", &["a"])])));
    }

    /// Random blocks built from real and made-up operators, keys and values, nested at
    /// random: parsing never panics, and whatever parses evaluates without panicking on
    /// random request values. Bounded: 3000 blocks.
    #[test]
    fn any_block_parses_or_fails_cleanly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Mostly what parses (so evaluation runs too), now and then what must not.
        let ops = [
            "StringEquals",
            "StringNotLikeIfExists",
            "NumericLessThan",
            "DateGreaterThan",
            "Bool",
            "IpAddress",
            "NotIpAddress",
            "Null",
            "StringLike",
            "ForAllValues:StringLike",
            "ForAnyValue:StringEquals",
        ];
        let bad_ops = [
            "NullIfExists",
            "ForAnyValue:",
            "IfExists",
            "Date",
            "Numeric",
            "",
        ];
        let keys = [
            "aws:SourceIp",
            "s3:prefix",
            "s3:max-keys",
            "aws:CurrentTime",
            "aws:EpochTime",
            "s3:RequestObjectTag/x",
            "aws:SecureTransport",
            "s3:RequestObjectTagKeys",
        ];
        let bad_keys = ["s3:ExistingObjectTag/", "nope"];
        let values = [
            "",
            "*",
            "10.0.0.0/8",
            "::1/128",
            "1.2.3.4/33",
            "2026-12-07",
            "-1",
            "1e308",
            "NaN",
            "true",
            "FALSE",
            "a*b?c",
            "2026-13-40T99:00:00Z",
            "18446744073709551616",
            "5",
        ];
        fn pick<'a>(rng: &mut impl Rng, from: &[&'a str]) -> &'a str {
            from[rng.gen_range(0..from.len())]
        }
        fn mostly<'a>(rng: &mut impl Rng, good: &[&'a str], bad: &[&'a str]) -> &'a str {
            if rng.gen_range(0..20) == 0 {
                pick(rng, bad)
            } else {
                pick(rng, good)
            }
        }
        fn value(rng: &mut impl Rng, values: &[&str], depth: u32) -> Value {
            match rng.gen_range(0..16) {
                0 => Value::from(rng.gen::<i64>()),
                1 => Value::Bool(rng.gen()),
                2 | 3 if depth < 3 => Value::Array(
                    (0..rng.gen_range(0..4))
                        .map(|_| value(rng, values, depth + 1))
                        .collect(),
                ),
                3 if depth < 3 => {
                    serde_json::json!({ pick(rng, values): value(rng, values, depth + 1) })
                }
                5 => Value::Null,
                _ => Value::from(pick(rng, values)),
            }
        }
        let mut parsed = 0;
        for _ in 0..3000 {
            let mut block = Map::new();
            for _ in 0..rng.gen_range(1..3) {
                let mut inner = Map::new();
                for _ in 0..rng.gen_range(1..3) {
                    let key = mostly(&mut rng, &keys, &bad_keys);
                    inner.insert(key.to_string(), value(&mut rng, &values, 0));
                }
                let entry = if rng.gen_range(0..20) == 0 {
                    value(&mut rng, &values, 0)
                } else {
                    Value::Object(inner)
                };
                block.insert(mostly(&mut rng, &ops, &bad_ops).to_string(), entry);
            }
            let Ok(conditions) = parse_block(&Value::Object(block)) else {
                continue;
            };
            let mut ctx = RequestContext::default();
            for _ in 0..rng.gen_range(0..4) {
                let vs = (0..rng.gen_range(0..3))
                    .map(|_| pick(&mut rng, &values).to_string())
                    .collect();
                ctx.set(pick(&mut rng, &keys), vs);
            }
            let _ = all_hold(&conditions, &ctx);
            parsed += 1;
        }
        // The evaluation half ran, not only the refusals.
        assert!(parsed > 100, "only {parsed} of 3000 blocks parsed");
    }

    #[test]
    fn bad_blocks_are_refused_with_their_reason() {
        let err = |json: &str| parse_block(&serde_json::from_str(json).unwrap()).unwrap_err();
        assert!(matches!(
            err(r#"{"ArnLike": {"aws:SourceArn": "arn:aws:sns:*"}}"#),
            PolicyError::Unsupported(_)
        ));
        assert!(matches!(
            err(r#"{"StringEquals": {"aws:SourceVpce": "vpce-1"}}"#),
            PolicyError::Unsupported(_)
        ));
        assert!(matches!(
            err(r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/40"}}"#),
            PolicyError::Malformed(_)
        ));
        assert!(matches!(
            err(r#"{"DateLessThan": {"aws:CurrentTime": "soon"}}"#),
            PolicyError::Malformed(_)
        ));
        assert!(matches!(
            err(r#"{"StringEquals": {}}"#),
            PolicyError::Malformed(_)
        ));
        assert!(matches!(
            err(r#"["StringEquals"]"#),
            PolicyError::Malformed(_)
        ));
        assert!(matches!(
            err(r#"{"StringEquals": {"s3:prefix": {"a": 1}}}"#),
            PolicyError::Malformed(_)
        ));
    }
}
