//! Bucket policies: the common subset of the IAM policy language S3 accepts on a bucket.
//!
//! Supported: `Version`, `Id`, and statements with `Sid`, `Effect` (Allow or Deny), `Principal`
//! (`"*"`, `{"AWS": "*"}`, `{"AWS": [key ids or arn:aws:iam::ACCOUNT:user/KEYID]}`, the same
//! under `CanonicalUser`), `Action` (`s3:...` names with `*` and `?` wildcards, or `*`) and
//! `Resource` (`arn:aws:s3:::bucket`, `arn:aws:s3:::bucket/prefix*`, wildcards) and
//! `Condition` (see [`crate::condition`]: the operators and keys the gateway evaluates; others
//! are refused), and their complements `NotPrincipal` (with Deny), `NotAction` and
//! `NotResource` (the statement applies to every principal, action or resource but those
//! listed; one of each pair per statement).
//!
//! Evaluation follows IAM: an explicit Deny wins over any Allow; without a matching statement
//! the policy has no say and the caller falls back to grants and ACLs.

use serde_json::{Map, Value};

use crate::condition::{self, Condition, RequestContext};

/// Largest policy document accepted (S3's limit).
pub(crate) const MAX_POLICY_BYTES: usize = 20 * 1024;

/// Most statements in one policy; a 20 KiB document cannot hold many more anyway.
const MAX_STATEMENTS: usize = 256;

/// Why a policy document was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PolicyError {
    /// Not a valid policy (S3's MalformedPolicy).
    Malformed(String),
    /// Valid IAM, but a feature the gateway does not evaluate (NotImplemented).
    Unsupported(String),
}

/// Who a statement is about.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principals {
    /// Everyone, anonymous callers included.
    Anyone,
    /// These access key ids.
    Keys(Vec<String>),
}

/// One parsed statement.
#[derive(Clone, Debug)]
struct Statement {
    /// `Effect: Allow` (else Deny).
    allow: bool,
    /// `Principal` (or `NotPrincipal`, when `not_principal`).
    principals: Principals,
    not_principal: bool,
    /// `Action` patterns, lowercased (actions match case-insensitively); `NotAction` ones when
    /// `not_action`.
    actions: Vec<String>,
    not_action: bool,
    /// `Resource` patterns; `NotResource` ones when `not_resource`.
    resources: Vec<String>,
    not_resource: bool,
    /// `Condition`: all must hold for the statement to apply.
    conditions: Vec<Condition>,
}

/// A validated bucket policy.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    statements: Vec<Statement>,
}

/// What a request touches, for resource matching.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resource<'a> {
    /// The bucket itself (`arn:aws:s3:::bucket`).
    Bucket(&'a str),
    /// One object (`arn:aws:s3:::bucket/key`).
    Object(&'a str, &'a str),
    /// Objects the request names only later (DeleteObjects): an Allow must cover every key of
    /// the bucket, and a Deny on any key of it applies.
    AnyObject(&'a str),
}

/// A policy's verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A Deny statement matches: refuse, whatever else allows it.
    Deny,
    /// An Allow statement matches and no Deny does.
    Allow,
    /// No statement matches.
    NoOpinion,
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

impl Policy {
    /// Parses and validates `text` as the policy of `bucket`.
    pub(crate) fn parse(bucket: &str, text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(malformed(format!(
                "the policy is {} bytes; bucket policies must be at most 20 KiB",
                text.len()
            )));
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(malformed("the policy must be a JSON object"));
        };
        for (name, value) in &doc {
            match name.as_str() {
                "Version" => match value.as_str() {
                    Some("2012-10-17" | "2008-10-17") => {}
                    _ => {
                        return Err(malformed(
                            "the policy Version must be \"2012-10-17\" (or \"2008-10-17\")",
                        ))
                    }
                },
                "Id" => {
                    if !value.is_string() {
                        return Err(malformed("the policy Id must be a string"));
                    }
                }
                "Statement" => {}
                other => {
                    return Err(malformed(format!(
                        "unknown policy element `{other}`: a policy has Version, Id and Statement"
                    )))
                }
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => {
                return Err(malformed(
                    "Statement must be an object or an array of objects",
                ))
            }
            None => return Err(malformed("the policy has no Statement")),
        };
        if statements.is_empty() {
            return Err(malformed("the policy has no statements"));
        }
        if statements.len() > MAX_STATEMENTS {
            return Err(malformed(format!(
                "the policy has more than {MAX_STATEMENTS} statements"
            )));
        }
        let statements = statements
            .into_iter()
            .map(|s| match s {
                Value::Object(s) => parse_statement(bucket, s),
                _ => Err(malformed("each statement must be a JSON object")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// The access key ids the policy names as principals, each once (to check that they
    /// exist).
    pub(crate) fn named_keys(&self) -> std::collections::BTreeSet<&str> {
        self.statements
            .iter()
            .flat_map(|s| match &s.principals {
                Principals::Anyone => &[][..],
                Principals::Keys(keys) => keys.as_slice(),
            })
            .map(String::as_str)
            .collect()
    }

    /// Whether the policy allows something to everyone (GetBucketPolicyStatus's IsPublic;
    /// BlockPublicPolicy refuses such a policy).
    pub(crate) fn is_public(&self) -> bool {
        self.statements.iter().any(Statement::is_public)
    }

    /// Whether a statement's conditions read an existing object's tags.
    pub(crate) fn needs_existing_tags(&self) -> bool {
        self.statements
            .iter()
            .any(|s| condition::needs_existing_tags(&s.conditions))
    }

    /// [`Policy::evaluate_in`] of a request that carries no condition keys.
    #[cfg(test)]
    pub(crate) fn evaluate(
        &self,
        principal: Option<&str>,
        action: &str,
        resource: Resource<'_>,
    ) -> Decision {
        self.evaluate_in(
            principal,
            action,
            resource,
            &RequestContext::default(),
            false,
        )
    }

    /// The verdict on `action` (e.g. `s3:GetObject`) over `resource` by `principal` (an access
    /// key id; `None` for anonymous requests), whose condition keys are in `ctx`.
    /// `restrict` (RestrictPublicBuckets) leaves out the public Allow statements: only the
    /// statements naming keys still allow, every Deny still refuses.
    pub(crate) fn evaluate_in(
        &self,
        principal: Option<&str>,
        action: &str,
        resource: Resource<'_>,
        ctx: &RequestContext,
        restrict: bool,
    ) -> Decision {
        let action = action.to_ascii_lowercase();
        let mut allowed = false;
        for s in &self.statements {
            if restrict && s.is_public() {
                continue;
            }
            let listed = match &s.principals {
                Principals::Anyone => true,
                Principals::Keys(keys) => principal.is_some_and(|p| keys.iter().any(|k| k == p)),
            };
            let action_listed = s.actions.iter().any(|a| glob(a, &action));
            if listed == s.not_principal || action_listed == s.not_action {
                continue;
            }
            if !s.covers(resource) || !condition::all_hold(&s.conditions, ctx) {
                continue;
            }
            if !s.allow {
                return Decision::Deny;
            }
            allowed = true;
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

impl Statement {
    /// Whether the statement allows something to everyone: an Allow for `"*"` whose conditions
    /// do not limit it to fixed source addresses.
    fn is_public(&self) -> bool {
        self.allow
            && self.principals == Principals::Anyone
            && !self.not_principal
            && !condition::limits_source(&self.conditions)
    }

    /// Whether the statement applies to `resource`: one of its Resource patterns matches it
    /// (with NotResource: none does). For the objects a batch names later (DeleteObjects) an
    /// Allow must apply to every key of the bucket, and a Deny applies if it may apply to one.
    fn covers(&self, resource: Resource<'_>) -> bool {
        let one = |arn: &str| self.resources.iter().any(|r| glob(r, arn)) != self.not_resource;
        match resource {
            Resource::Bucket(b) => one(&format!("arn:aws:s3:::{b}")),
            Resource::Object(b, k) => one(&format!("arn:aws:s3:::{b}/{k}")),
            Resource::AnyObject(b) => {
                let prefix = format!("arn:aws:s3:::{b}/");
                let rs = &self.resources;
                match (self.allow, self.not_resource) {
                    (true, false) => rs.iter().any(|r| covers_all_after(r, &prefix)),
                    // Every key: no excluded pattern may match any of them.
                    (true, true) => !rs.iter().any(|r| may_match_after(r, &prefix)),
                    (false, false) => rs.iter().any(|r| may_match_after(r, &prefix)),
                    // Some key: unless the excluded patterns take every key.
                    (false, true) => !rs.iter().any(|r| covers_all_after(r, &prefix)),
                }
            }
        }
    }
}

/// The one element of a pair a statement has (`Action` or `NotAction`, ...): its value and
/// whether it is the negated one.
fn one_of<'a>(
    s: &'a Map<String, Value>,
    name: &str,
) -> Result<(Option<&'a Value>, bool), PolicyError> {
    let not = format!("Not{name}");
    match (s.get(name), s.get(&not)) {
        (Some(_), Some(_)) => Err(malformed(format!(
            "a statement has either {name} or {not}, not both"
        ))),
        (Some(v), None) => Ok((Some(v), false)),
        (None, Some(v)) => Ok((Some(v), true)),
        (None, None) => Ok((None, false)),
    }
}

fn parse_statement(bucket: &str, s: &Map<String, Value>) -> Result<Statement, PolicyError> {
    for name in s.keys() {
        match name.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition"
            | "NotPrincipal" | "NotAction" | "NotResource" => {}
            other => {
                return Err(malformed(format!(
                    "unknown statement element `{other}`: a statement has Sid, Effect, \
                     Principal (or NotPrincipal), Action (or NotAction), Resource (or \
                     NotResource) and Condition"
                )))
            }
        }
    }
    if s.get("Sid").is_some_and(|v| !v.is_string()) {
        return Err(malformed("Sid must be a string"));
    }
    let allow = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(malformed("each statement needs an Effect of Allow or Deny")),
    };
    let (principal, not_principal) = one_of(s, "Principal")?;
    let principals = parse_principal(
        principal.ok_or_else(|| malformed("each statement needs a Principal (or NotPrincipal)"))?,
    )?;
    if not_principal && allow {
        // IAM takes it but warns against it: an Allow to everyone but a few is almost always
        // a Deny written the wrong way round.
        return Err(malformed(
            "NotPrincipal goes with Effect Deny: to allow everyone but some keys, allow \
             \"*\" and deny those keys",
        ));
    }
    let (action, not_action) = one_of(s, "Action")?;
    let actions = string_list(action, "Action")?
        .into_iter()
        .map(|a| {
            let lower = a.to_ascii_lowercase();
            if lower == "*" || (lower.starts_with("s3:") && lower.len() > 3) {
                Ok(lower)
            } else {
                Err(malformed(format!(
                    "Policy has invalid action `{a}`: use s3:ACTION names such as s3:GetObject, \
                     or s3:*"
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (resource, not_resource) = one_of(s, "Resource")?;
    let resources = string_list(resource, "Resource")?;
    for r in &resources {
        let in_bucket = r
            .strip_prefix("arn:aws:s3:::")
            .is_some_and(|rest| may_match_after(rest, bucket));
        if !in_bucket {
            return Err(malformed(format!(
                "Policy has invalid resource `{r}`: resources must be arn:aws:s3:::{bucket} or \
                 arn:aws:s3:::{bucket}/KEY-PATTERN"
            )));
        }
    }
    let conditions = condition::parse_statement_conditions(s)?;
    Ok(Statement {
        allow,
        principals,
        not_principal,
        actions,
        not_action,
        resources,
        not_resource,
        conditions,
    })
}

/// A string or a non-empty list of strings.
fn string_list(value: Option<&Value>, what: &str) -> Result<Vec<String>, PolicyError> {
    let list = match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(format!("{what} must be a string or a list of strings")))?,
        Some(_) => {
            return Err(malformed(format!(
                "{what} must be a string or a list of strings"
            )))
        }
        None => return Err(malformed(format!("each statement needs {what}"))),
    };
    if list.is_empty() {
        return Err(malformed(format!("{what} must not be empty")));
    }
    Ok(list)
}

fn parse_principal(value: &Value) -> Result<Principals, PolicyError> {
    let invalid = |p: &str| {
        malformed(format!(
            "Invalid principal in policy: `{p}`; use \"*\", an access key id or \
             arn:aws:iam::ACCOUNT:user/KEYID"
        ))
    };
    let map = match value {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(map) if !map.is_empty() => map,
        other => return Err(invalid(&other.to_string())),
    };
    let mut keys = Vec::new();
    for (kind, ids) in map {
        if kind != "AWS" && kind != "CanonicalUser" {
            return Err(malformed(format!(
                "Invalid principal in policy: principals of type `{kind}` do not exist here; \
                 use AWS"
            )));
        }
        for id in string_list(Some(ids), "Principal")? {
            if id == "*" {
                return Ok(Principals::Anyone);
            }
            let key = match id.strip_prefix("arn:aws:iam::") {
                Some(rest) => match rest.split_once(":user/") {
                    Some((_, key)) => key.to_string(),
                    None => return Err(invalid(&id)),
                },
                None => id.clone(),
            };
            let valid = (3..=128).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(invalid(&id));
            }
            keys.push(key);
        }
    }
    Ok(Principals::Keys(keys))
}

/// The pattern positions reachable after matching `text` against `pattern` (`*` any run, `?`
/// one character), or `None` when no position is.
fn glob_states(pattern: &[char], text: &str) -> Vec<bool> {
    let n = pattern.len();
    // states[i]: the first i pattern characters can match the text read so far.
    let mut states = vec![false; n + 1];
    states[0] = true;
    close_stars(pattern, &mut states);
    for c in text.chars() {
        let mut next = vec![false; n + 1];
        for i in 0..n {
            if !states[i] {
                continue;
            }
            match pattern[i] {
                '*' => next[i] = true,
                '?' => next[i + 1] = true,
                p if p == c => next[i + 1] = true,
                _ => {}
            }
        }
        close_stars(pattern, &mut next);
        if !next.iter().any(|s| *s) {
            return next;
        }
        states = next;
    }
    states
}

/// A `*` may match nothing: a state before one also reaches the state after it.
fn close_stars(pattern: &[char], states: &mut [bool]) {
    for i in 0..pattern.len() {
        if states[i] && pattern[i] == '*' {
            states[i + 1] = true;
        }
    }
}

/// Whether `pattern` matches all of `text`.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    glob_states(&p, text)[p.len()]
}

/// Whether `pattern` matches some string that starts with `prefix`.
fn may_match_after(pattern: &str, prefix: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    glob_states(&p, prefix).iter().any(|s| *s)
}

/// Whether `pattern` matches every string that starts with `prefix`: it matches `prefix`
/// itself and ends in `*`, which can then take any tail.
fn covers_all_after(pattern: &str, prefix: &str) -> bool {
    pattern.ends_with('*') && glob(pattern, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse("photos", text)
    }

    fn public_read() -> Policy {
        parse(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"pub","Effect":"Allow",
               "Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/public/*"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn restricting_leaves_out_only_public_allows() {
        let p = parse(
            r#"{"Version":"2012-10-17","Statement":[
               {"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
                "Resource":"arn:aws:s3:::photos/*"},
               {"Effect":"Allow","Principal":{"AWS":"KEY1"},"Action":"s3:PutObject",
                "Resource":"arn:aws:s3:::photos/*"},
               {"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject",
                "Resource":"arn:aws:s3:::photos/*"}]}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        let obj = Resource::Object("photos", "a");
        let eval = |who, action, restrict| p.evaluate_in(who, action, obj, &ctx, restrict);
        assert_eq!(eval(None, "s3:GetObject", false), Decision::Allow);
        assert_eq!(eval(None, "s3:GetObject", true), Decision::NoOpinion);
        assert_eq!(
            eval(Some("KEY1"), "s3:GetObject", true),
            Decision::NoOpinion
        );
        assert_eq!(eval(Some("KEY1"), "s3:PutObject", true), Decision::Allow);
        assert_eq!(eval(Some("KEY1"), "s3:DeleteObject", true), Decision::Deny);
    }

    #[test]
    fn globs_match_like_iam() {
        assert!(glob("s3:get*", "s3:getobject"));
        assert!(glob("s3:*", "s3:listbucket"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("arn:aws:s3:::b/*/x", "arn:aws:s3:::b/dir/sub/x"));
        assert!(!glob("arn:aws:s3:::b/*/x", "arn:aws:s3:::b/dir/sub/y"));
        assert!(glob("é*", "éa"));
        assert!(may_match_after("arn:aws:s3:::b/pre*", "arn:aws:s3:::b/"));
        assert!(!may_match_after("arn:aws:s3:::c/*", "arn:aws:s3:::b/"));
        assert!(covers_all_after("arn:aws:s3:::b/*", "arn:aws:s3:::b/"));
        assert!(covers_all_after("arn:aws:s3:::*", "arn:aws:s3:::b/"));
        assert!(!covers_all_after("arn:aws:s3:::b/pre*", "arn:aws:s3:::b/"));
    }

    #[test]
    fn anonymous_read_of_a_prefix() {
        let p = public_read();
        assert!(p.is_public());
        assert_eq!(
            p.evaluate(
                None,
                "s3:GetObject",
                Resource::Object("photos", "public/a.jpg")
            ),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(
                None,
                "s3:GetObject",
                Resource::Object("photos", "private/a.jpg")
            ),
            Decision::NoOpinion
        );
        assert_eq!(
            p.evaluate(
                None,
                "s3:PutObject",
                Resource::Object("photos", "public/a.jpg")
            ),
            Decision::NoOpinion
        );
        assert_eq!(
            p.evaluate(None, "s3:ListBucket", Resource::Bucket("photos")),
            Decision::NoOpinion
        );
    }

    #[test]
    fn deny_wins_and_principals_are_keys() {
        let p = parse(
            r#"{"Statement":[
                {"Effect":"Allow","Principal":{"AWS":["KEYA","arn:aws:iam::123456789012:user/KEYB"]},
                 "Action":["s3:*"],"Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]},
                {"Effect":"Deny","Principal":{"AWS":"KEYB"},"Action":"s3:Delete*",
                 "Resource":"arn:aws:s3:::photos/keep/*"}]}"#,
        )
        .unwrap();
        assert!(!p.is_public());
        assert_eq!(
            p.named_keys().into_iter().collect::<Vec<_>>(),
            ["KEYA", "KEYB"]
        );
        let obj = Resource::Object("photos", "keep/x");
        assert_eq!(
            p.evaluate(Some("KEYA"), "s3:DeleteObject", obj),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(Some("KEYB"), "s3:DeleteObject", obj),
            Decision::Deny
        );
        assert_eq!(
            p.evaluate(Some("KEYB"), "s3:GetObject", obj),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(Some("KEYC"), "s3:GetObject", obj),
            Decision::NoOpinion
        );
        assert_eq!(p.evaluate(None, "s3:GetObject", obj), Decision::NoOpinion);
        // Actions match case-insensitively.
        assert_eq!(
            p.evaluate(Some("KEYA"), "S3:LISTBUCKET", Resource::Bucket("photos")),
            Decision::Allow
        );
        // DeleteObjects: the Allow covers the whole bucket; the Deny touches part of it.
        assert_eq!(
            p.evaluate(
                Some("KEYA"),
                "s3:DeleteObject",
                Resource::AnyObject("photos")
            ),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(
                Some("KEYB"),
                "s3:DeleteObject",
                Resource::AnyObject("photos")
            ),
            Decision::Deny
        );
    }

    #[test]
    fn prefix_allows_do_not_cover_batch_deletes() {
        let p = parse(
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:DeleteObject",
                "Resource":"arn:aws:s3:::photos/tmp/*"}}"#,
        )
        .unwrap();
        assert_eq!(
            p.evaluate(None, "s3:DeleteObject", Resource::AnyObject("photos")),
            Decision::NoOpinion
        );
        assert_eq!(
            p.evaluate(None, "s3:DeleteObject", Resource::Object("photos", "tmp/1")),
            Decision::Allow
        );
    }

    #[test]
    fn malformed_policies_say_why() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"Version":"2012-10-17"}"#, "no Statement"),
            (r#"{"Statement":[]}"#, "no statements"),
            (
                r#"{"Statement":{"Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
                "Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
                "Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
                "Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:Run","Resource":"arn:aws:s3:::photos"}}"#,
                "invalid action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}}"#,
                "invalid resource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
                "Invalid principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:role/x"},"Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
                "Invalid principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":[],"Resource":"arn:aws:s3:::photos"}}"#,
                "must not be empty",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos","Extra":1}}"#,
                "unknown statement element",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
        ];
        for (text, why) in cases {
            match parse(text) {
                Err(PolicyError::Malformed(msg)) => assert!(msg.contains(why), "{text}: {msg}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let big = format!(
            r#"{{"Id":"{}","Statement":[]}}"#,
            "x".repeat(MAX_POLICY_BYTES)
        );
        assert!(matches!(parse(&big), Err(PolicyError::Malformed(m)) if m.contains("20 KiB")));
    }

    #[test]
    fn complements_apply_to_everything_but_what_they_list() {
        // Everyone but the owner's key is denied deletes; other actions are untouched.
        let p = parse(
            r#"{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"OWNERKEY"},
                "Action":"s3:DeleteObject","Resource":"arn:aws:s3:::photos/*"}]}"#,
        )
        .unwrap();
        let obj = Resource::Object("photos", "a");
        assert_eq!(
            p.evaluate(Some("OTHER"), "s3:DeleteObject", obj),
            Decision::Deny
        );
        assert_eq!(p.evaluate(None, "s3:DeleteObject", obj), Decision::Deny);
        assert_eq!(
            p.evaluate(Some("OWNERKEY"), "s3:DeleteObject", obj),
            Decision::NoOpinion
        );
        assert!(!p.is_public());
        // Anyone may do anything but write, and anywhere but under private/.
        let p = parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":["s3:Put*","s3:Delete*"],
                "NotResource":"arn:aws:s3:::photos/private/*"}]}"#,
        )
        .unwrap();
        assert_eq!(
            p.evaluate(None, "s3:GetObject", Resource::Object("photos", "pub/a")),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(
                None,
                "s3:GetObject",
                Resource::Object("photos", "private/a")
            ),
            Decision::NoOpinion
        );
        assert_eq!(
            p.evaluate(None, "s3:PutObject", Resource::Object("photos", "pub/a")),
            Decision::NoOpinion
        );
        assert_eq!(
            p.evaluate(None, "s3:ListBucket", Resource::Bucket("photos")),
            Decision::Allow
        );
        // A batch delete names its keys later: an Allow that leaves some out covers none,
        // a Deny that leaves some out may apply.
        let deny = parse(
            r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject",
                "NotResource":"arn:aws:s3:::photos/tmp/*"}]}"#,
        )
        .unwrap();
        assert_eq!(
            deny.evaluate(None, "s3:DeleteObject", Resource::AnyObject("photos")),
            Decision::Deny
        );
        let allow_all = parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:DeleteObject",
                "NotResource":"arn:aws:s3:::other/*"}]}"#,
        );
        assert!(allow_all.is_err(), "resources stay within the bucket");
    }

    #[test]
    fn pairs_and_allows_to_everyone_but_are_refused() {
        for (a, b) in [
            ("Principal", "NotPrincipal"),
            ("Action", "NotAction"),
            ("Resource", "NotResource"),
        ] {
            let mut st = serde_json::json!({"Effect":"Deny","Principal":"*","Action":"s3:*",
                "Resource":"arn:aws:s3:::photos"});
            st[b] = st[a].clone();
            if a == "Principal" {
                st[b] = serde_json::json!({"AWS": "SOMEKEY"});
            }
            let text = serde_json::json!({"Statement": [st]}).to_string();
            assert!(
                matches!(parse(&text), Err(PolicyError::Malformed(m)) if m.contains(b)),
                "{b}"
            );
        }
        let text = r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"SOMEKEY"},
            "Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#;
        assert!(matches!(parse(text), Err(PolicyError::Malformed(m)) if m.contains("Deny")));
    }
}
