//! Browser POST uploads: the form fields s3s reads but does not act on. s3s parses the
//! multipart form, checks its policy and signature and turns it into a PutObject, but drops the
//! uploaded file's name (`${filename}` in the key), the `tagging` field and the checksum
//! fields. [`FormHead`], tapping the request body, keeps a copy of the form up to the file's content as the body
//! streams past (nothing else is buffered); [`PostForm`] reads those fields from it for the
//! access hook, which applies them before the upload runs.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::metrics::Tap;

/// Most form bytes kept before the file part: S3 limits a POST form's fields to 20 KiB of
/// policy and a few fields, so this only bounds a hostile client.
const MAX_CAPTURE: usize = 1 << 20;

/// The captured start of a POST form, shared between the body and the access hook.
#[derive(Clone, Debug)]
pub(crate) struct FormHead {
    /// The multipart boundary.
    boundary: String,
    /// The form's bytes up to the end of the file part's headers (or [`MAX_CAPTURE`]).
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl FormHead {
    /// A capture for a request whose Content-Type is multipart/form-data with a boundary.
    pub(crate) fn for_request(headers: &http::HeaderMap) -> Option<FormHead> {
        let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
        let (kind, params) = content_type.split_once(';')?;
        if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
            return None;
        }
        let boundary = params.split(';').find_map(|p| {
            let (name, value) = p.trim().split_once('=')?;
            name.eq_ignore_ascii_case("boundary")
                .then(|| value.trim_matches('"').to_string())
        })?;
        Some(FormHead {
            boundary,
            bytes: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The fields seen so far.
    pub(crate) fn form(&self) -> PostForm {
        let bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        PostForm::parse(&bytes, &self.boundary)
    }

    /// Keeps `data` while the file's content has not started.
    fn keep(&self, data: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.len() >= MAX_CAPTURE || file_content_started(&bytes) {
            return;
        }
        let room = MAX_CAPTURE - bytes.len();
        bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Whether the headers of the part named `file` are complete in `bytes`.
fn file_content_started(bytes: &[u8]) -> bool {
    let marker = b"name=\"file\"";
    find(bytes, marker).is_some_and(|at| find(&bytes[at..], b"\r\n\r\n").is_some())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request body tapped by its [`FormHead`] keeps the form until the file's content.
impl Tap for FormHead {
    fn data(&self, data: &Bytes) {
        self.keep(data);
    }
}

/// The fields of a POST form before its file, and the file's name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PostForm {
    /// Field names (lowercased, as S3 matches them) and values, in form order.
    pub(crate) fields: Vec<(String, String)>,
    /// The `filename` of the file part, as the browser sent it.
    pub(crate) filename: Option<String>,
}

impl PostForm {
    /// Parses the start of a multipart/form-data body.
    pub(crate) fn parse(bytes: &[u8], boundary: &str) -> PostForm {
        let delimiter = format!("--{boundary}");
        let text = String::from_utf8_lossy(bytes);
        let mut form = PostForm::default();
        for part in text.split(delimiter.as_str()).skip(1) {
            let Some((head, value)) = part.split_once("\r\n\r\n") else {
                break;
            };
            let Some(disposition) = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            else {
                continue;
            };
            let Some(name) = param(disposition, "name") else {
                continue;
            };
            if name.eq_ignore_ascii_case("file") {
                form.filename = param(disposition, "filename");
                break;
            }
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            form.fields
                .push((name.to_ascii_lowercase(), value.to_string()));
        }
        form
    }

    /// A field's value.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks the `expiration` of a POST policy (base64 of its JSON document): S3 wants an ISO 8601
/// UTC time (`2030-01-01T12:00:00.000Z`) and refuses anything else, which s3s lets through when
/// it parses as some other date-time (an offset instead of `Z`, for one).
pub(crate) fn check_policy_expiration(policy_b64: &str) -> Result<(), String> {
    use base64::Engine as _;
    let Ok(json) = base64::engine::general_purpose::STANDARD.decode(policy_b64.trim()) else {
        // Not base64: s3s refuses it as a malformed policy.
        return Ok(());
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Ok(());
    };
    let expiration = doc.get("expiration").and_then(|e| e.as_str()).unwrap_or("");
    if utc_iso8601(expiration) {
        Ok(())
    } else {
        Err(format!(
            "Invalid Policy: Invalid 'expiration' value: '{expiration}': write an ISO 8601 UTC \
             time such as 2030-01-01T12:00:00.000Z"
        ))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn utc_iso8601(s: &str) -> bool {
    let Some(body) = s.strip_suffix('Z') else {
        return false;
    };
    let (main, fraction) = body.split_once('.').unwrap_or((body, "0"));
    let shape = main.len() == 19
        && main.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    let fraction_ok = !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit());
    shape
        && fraction_ok
        && time::PrimitiveDateTime::parse(
            main,
            &time::format_description::well_known::Iso8601::DEFAULT,
        )
        .is_ok()
}

/// A `name="value"` parameter of a Content-Disposition header.
fn param(disposition: &str, name: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (n, v) = p.trim().split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A `<Tagging><TagSet><Tag><Key>..</Key><Value>..</Value></Tag>...` document as the
/// `x-amz-tagging` query string PutObject takes; `None` when it is not such a document.
pub(crate) fn tagging_query(xml: &str) -> Option<String> {
    let mut pairs = Vec::new();
    for tag in xml.split("<Tag>").skip(1) {
        let inner = tag.split("</Tag>").next()?;
        let element = |name: &str| {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            let start = inner.find(&open)? + open.len();
            let end = inner[start..].find(&close)? + start;
            Some(xml_unescape(&inner[start..end]))
        };
        pairs.push(format!(
            "{}={}",
            crate::convert::url_encode(&element("Key")?),
            crate::convert::url_encode(&element("Value").unwrap_or_default())
        ));
    }
    xml.contains("<Tagging").then(|| pairs.join("&"))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str =
        "--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nup/${filename}\r\n\
        --b\r\nContent-Disposition: form-data; name=\"Tagging\"\r\n\r\n<Tagging/>\r\n\
        --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n\
        Content-Type: text/plain\r\n\r\nfile content";

    #[test]
    fn fields_and_filename_are_read_up_to_the_file() {
        let form = PostForm::parse(FORM.as_bytes(), "b");
        assert_eq!(form.field("key"), Some("up/${filename}"));
        assert_eq!(form.field("tagging"), Some("<Tagging/>"));
        assert_eq!(form.filename.as_deref(), Some("a b.txt"));
        assert!(file_content_started(FORM.as_bytes()));
        assert!(!file_content_started(&FORM.as_bytes()[..40]));
    }

    #[test]
    fn policy_expirations_are_utc_iso8601() {
        assert!(utc_iso8601("2030-01-01T12:00:00.000Z"));
        assert!(utc_iso8601("2030-01-01T12:00:00Z"));
        assert!(!utc_iso8601("2030-01-01T12:00:00+02:00"));
        assert!(!utc_iso8601("2030-01-01"));
        assert!(!utc_iso8601("2030-13-01T12:00:00Z"));
    }

    #[test]
    fn tagging_documents_become_query_strings() {
        let xml = "<Tagging><TagSet><Tag><Key>a b</Key><Value>x&amp;y</Value></Tag>\
                   <Tag><Key>c</Key><Value></Value></Tag></TagSet></Tagging>";
        assert_eq!(tagging_query(xml).as_deref(), Some("a%20b=x%26y&c="));
        assert_eq!(tagging_query("nonsense"), None);
    }

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=\"xyz\"".parse().unwrap(),
        );
        assert_eq!(FormHead::for_request(&headers).unwrap().boundary, "xyz");
        headers.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(FormHead::for_request(&headers).is_none());
    }
}
