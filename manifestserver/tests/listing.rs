//! ListObjects, ListObjectVersions and their S3 prefix / delimiter / marker semantics.

mod common;

use std::collections::BTreeSet;

use cairn_manifestserver::{ListQuery, ManifestStore, VersionsQuery};
use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// An object or a common prefix, as listings return them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum E {
    Key(String),
    Prefix(String),
}

/// What S3 returns for the whole listing, computed naively from the sorted keys.
fn model(
    keys: &BTreeSet<String>,
    prefix: &str,
    delim: Option<&str>,
    after: Option<&str>,
) -> Vec<E> {
    let mut out: Vec<E> = Vec::new();
    for k in keys.iter().filter(|k| k.starts_with(prefix)) {
        let e = match delim.and_then(|d| k[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => E::Prefix(k[..prefix.len() + i + d.len()].to_string()),
            None => E::Key(k.clone()),
        };
        let name = match &e {
            E::Key(s) | E::Prefix(s) => s.clone(),
        };
        if after.is_some_and(|a| name.as_str() <= a) || out.last() == Some(&e) {
            continue;
        }
        out.push(e);
    }
    out
}

/// Pages through `list_objects`, checking each page's bookkeeping.
fn list_all(s: &ManifestStore, q: &ListQuery) -> Vec<E> {
    let mut q = q.clone();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let p = s.list_objects("b", &q).unwrap();
        let mut page: Vec<E> = p.objects.iter().map(|m| E::Key(m.key.clone())).collect();
        page.extend(p.common_prefixes.iter().map(|c| E::Prefix(c.clone())));
        page.sort_by(|a, b| {
            let n = |e: &E| match e {
                E::Key(s) | E::Prefix(s) => s.clone(),
            };
            n(a).cmp(&n(b))
        });
        assert!(page.len() <= q.max_keys);
        out.extend(page.clone());
        if !p.is_truncated {
            assert_eq!(p.next_marker, None);
            return out;
        }
        assert_eq!(page.len(), q.max_keys, "a truncated page is full");
        let last = match page.last().unwrap() {
            E::Key(s) | E::Prefix(s) => s.clone(),
        };
        assert_eq!(p.next_marker.as_deref(), Some(last.as_str()));
        q.start_after = p.next_marker;
    }
    panic!("listing does not end");
}

fn store_with(dir: &std::path::Path, keys: &[&str]) -> ManifestStore {
    let s = open_fast(dir);
    for (i, k) in keys.iter().enumerate() {
        s.apply(&version("b", k, i as u64, 1)).unwrap();
    }
    s
}

fn q(prefix: &str, delim: Option<&str>, after: Option<&str>, max: usize) -> ListQuery {
    ListQuery {
        prefix: prefix.to_string(),
        delimiter: delim.map(str::to_string),
        start_after: after.map(str::to_string),
        max_keys: max,
    }
}

fn names(p: &cairn_manifestserver::ListPage) -> (Vec<String>, Vec<String>) {
    (
        p.objects.iter().map(|m| m.key.clone()).collect(),
        p.common_prefixes.clone(),
    )
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn prefix_delimiter_and_start_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(
        dir.path(),
        &["a/1", "a/2", "b", "c/x/y", "c/z", "d", "gone"],
    );
    s.apply(&marker("b", "gone", 100)).unwrap();

    let p = s.list_objects("b", &q("", Some("/"), None, 100)).unwrap();
    assert_eq!(names(&p), (strs(&["b", "d"]), strs(&["a/", "c/"])));
    assert!(!p.is_truncated);

    let p = s.list_objects("b", &q("c/", Some("/"), None, 100)).unwrap();
    assert_eq!(names(&p), (strs(&["c/z"]), strs(&["c/x/"])));

    let p = s.list_objects("b", &q("c", None, None, 100)).unwrap();
    assert_eq!(names(&p).0, strs(&["c/x/y", "c/z"]));

    let p = s.list_objects("b", &q("", None, Some("a/1"), 100)).unwrap();
    assert_eq!(names(&p).0, strs(&["a/2", "b", "c/x/y", "c/z", "d"]));

    // A marker equal to a common prefix means it was already returned; so does one inside it.
    let p = s
        .list_objects("b", &q("", Some("/"), Some("a/"), 100))
        .unwrap();
    assert_eq!(names(&p), (strs(&["b", "d"]), strs(&["c/"])));
    let p = s
        .list_objects("b", &q("", Some("/"), Some("a/1"), 100))
        .unwrap();
    assert_eq!(names(&p), (strs(&["b", "d"]), strs(&["c/"])));
    let p = s
        .list_objects("b", &q("", Some("/"), Some("a"), 100))
        .unwrap();
    assert_eq!(names(&p), (strs(&["b", "d"]), strs(&["a/", "c/"])));

    // Each common prefix counts once toward max_keys.
    let p = s.list_objects("b", &q("", Some("/"), None, 2)).unwrap();
    assert_eq!(names(&p), (strs(&["b"]), strs(&["a/"])));
    assert!(p.is_truncated);
    assert_eq!(p.next_marker.as_deref(), Some("b"));

    // A page that ends exactly at the last entry is not truncated.
    let p = s.list_objects("b", &q("", Some("/"), None, 4)).unwrap();
    assert!(!p.is_truncated);
    assert_eq!(p.next_marker, None);

    let p = s.list_objects("b", &q("", None, None, 0)).unwrap();
    assert!(p.objects.is_empty() && p.common_prefixes.is_empty() && !p.is_truncated);

    // Other buckets are invisible, including ones whose name extends this one's.
    s.apply(&version("bb", "a/1", 1, 1)).unwrap();
    s.apply(&version("a", "zzz", 1, 1)).unwrap();
    assert_eq!(list_all(&s, &q("", None, None, 1000)).len(), 6);
    let p = s.list_objects("bb", &q("", None, None, 10)).unwrap();
    assert_eq!(names(&p).0, strs(&["a/1"]));
}

#[test]
fn pagination_visits_every_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let parts = ["a", "b", "/", "\0", "é", "日", "z", "//", "\u{1}"];
    let mut keys = BTreeSet::new();
    while keys.len() < 150 {
        let n = rng.gen_range(1..6);
        let k: String = (0..n).map(|_| *parts.choose(&mut rng).unwrap()).collect();
        keys.insert(k);
    }
    let list: Vec<&str> = keys.iter().map(String::as_str).collect();
    let s = store_with(dir.path(), &list);

    for delim in [None, Some("/"), Some("\0"), Some("//"), Some("é")] {
        for prefix in ["", "a", "a/", "\0", "é"] {
            for after in [None, Some("a"), Some("a/"), Some("b\0"), Some("zz")] {
                let want = model(&keys, prefix, delim, after);
                for max in [1, 2, 3, 7, 1000] {
                    let got = list_all(&s, &q(prefix, delim, after, max));
                    assert_eq!(
                        got, want,
                        "prefix {prefix:?} delim {delim:?} after {after:?} max {max}"
                    );
                }
            }
        }
    }
}

#[test]
fn max_keys_is_capped_at_1000() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..1005).map(|i| format!("k{i:05}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let s = store_with(dir.path(), &refs);
    let p = s.list_objects("b", &q("", None, None, 5000)).unwrap();
    assert_eq!(p.objects.len(), 1000);
    assert!(p.is_truncated);
    assert_eq!(p.next_marker.as_deref(), Some("k00999"));
    let p = s
        .list_versions(
            "b",
            &VersionsQuery {
                max_keys: usize::MAX,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p.versions.len(), 1000);
    assert!(p.is_truncated);
}

#[test]
fn versions_pagination_with_markers() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_fast(dir.path());
    let mut rng = StdRng::seed_from_u64(3);
    let keys = ["a", "a/x", "a/y", "b", "b\0", "c/d/e", "é"];
    let mut id = 0;
    for k in keys {
        for _ in 0..rng.gen_range(1..5) {
            id += 1;
            if rng.gen_bool(0.3) {
                s.apply(&marker("b", k, id)).unwrap();
            } else {
                s.apply(&version("b", k, id, 1)).unwrap();
            }
        }
    }
    let full = all_versions(&s, "b", 1000);
    assert_eq!(full.len() as u64, id);
    // By key, then newest first.
    for w in full.windows(2) {
        assert!(w[0].key < w[1].key || (w[0].key == w[1].key && w[0].version > w[1].version));
    }
    for page in [1, 2, 3, 5] {
        assert_eq!(all_versions(&s, "b", page), full, "page size {page}");
    }

    // key_marker alone skips every version of that key.
    let p = s
        .list_versions(
            "b",
            &VersionsQuery {
                key_marker: Some("a/x".into()),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p.versions.first().unwrap().key, "a/y");
    // With a version marker: start after that version of that key.
    let second = &full[1];
    let p = s
        .list_versions(
            "b",
            &VersionsQuery {
                key_marker: Some(second.key.clone()),
                version_marker: Some(second.version),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p.versions, full[2..].to_vec());

    // Delimiter: common prefixes with markers.
    let mut vq = VersionsQuery {
        delimiter: Some("/".into()),
        max_keys: 1,
        ..Default::default()
    };
    let mut entries = Vec::new();
    for round in 0.. {
        assert!(round < 1000, "listing does not end");
        let p = s.list_versions("b", &vq).unwrap();
        assert_eq!(p.versions.len() + p.common_prefixes.len(), 1);
        entries.extend(p.versions.iter().map(|m| (m.key.clone(), Some(m.version))));
        entries.extend(p.common_prefixes.iter().map(|c| (c.clone(), None)));
        if !p.is_truncated {
            break;
        }
        if !p.common_prefixes.is_empty() {
            assert_eq!(p.next_version_marker, None);
        }
        vq.key_marker = p.next_key_marker;
        vq.version_marker = p.next_version_marker;
    }
    let mut want: Vec<(String, Option<_>)> = Vec::new();
    for m in &full {
        match m.key.find('/') {
            Some(i) => {
                let cp = (m.key[..=i].to_string(), None);
                if want.last() != Some(&cp) {
                    want.push(cp);
                }
            }
            None => want.push((m.key.clone(), Some(m.version))),
        }
    }
    assert_eq!(entries, want);
    assert!(entries.contains(&("a/".to_string(), None)));
    assert!(entries.contains(&("c/".to_string(), None)));
}
