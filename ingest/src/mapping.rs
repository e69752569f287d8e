//! Where a post's fields live in a hit's `_source`, and how to read them.
//!
//! Every field is a list of dotted paths tried in order; the first that holds a value wins.
//! `_id` (and the other `_`-prefixed hit fields) name the hit itself rather than its
//! `_source`. The defaults fit WordPress-shaped documents (Automattic's wpes schema and the
//! common `post_*` exports). Values are read forgivingly, because the same field comes in
//! several shapes across dumps:
//!
//! - a string, a number (ids), or a Jetpack multilingual object `{"default": "...", "en": ...}`
//!   (its `default`, else its first string value), or an array of those (the first);
//! - tags as an array of strings, of objects with `name`/`slug` (a name may itself be a
//!   multilingual object), an object keyed by tag, or a comma-separated string.
//!
//! `_source` is parsed once into a map of raw (unparsed) values; only the fields asked for are
//! parsed further, so the rest of a large document costs one scan.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Where each field of a post is found; see the module doc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct FieldMapping {
    /// Paths of the post's id (`_id` is the hit's own id).
    #[arg(long = "id-field", env = "POET_INGEST_ID_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().id)]
    pub id: Vec<String>,
    /// Paths of the HTML content.
    #[arg(long = "content-field", env = "POET_INGEST_CONTENT_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().content)]
    pub content: Vec<String>,
    /// Paths of the title.
    #[arg(long = "title-field", env = "POET_INGEST_TITLE_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().title)]
    pub title: Vec<String>,
    /// Paths of the tags.
    #[arg(long = "tags-field", env = "POET_INGEST_TAGS_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().tags)]
    pub tags: Vec<String>,
    /// Paths of the author.
    #[arg(long = "author-field", env = "POET_INGEST_AUTHOR_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().author)]
    pub author: Vec<String>,
    /// Paths of the date.
    #[arg(long = "date-field", env = "POET_INGEST_DATE_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().date)]
    pub date: Vec<String>,
    /// Paths of the language.
    #[arg(long = "lang-field", env = "POET_INGEST_LANG_FIELD", value_delimiter = ',', default_values_t = FieldMapping::default().lang)]
    pub lang: Vec<String>,
}

/// The flags' defaults too (their `default_values_t` read this).
impl Default for FieldMapping {
    fn default() -> Self {
        FieldMapping {
            id: paths(&["_id", "id", "ID", "post_id"]),
            content: paths(&["content", "post_content", "content_rendered", "body"]),
            title: paths(&["title", "post_title"]),
            tags: paths(&["tag", "tags", "post_tag", "taxonomy.post_tag"]),
            author: paths(&["author", "author.name", "post_author", "author_login"]),
            date: paths(&["date_gmt", "date", "post_date_gmt", "post_date"]),
            lang: paths(&["lang", "language", "locale"]),
        }
    }
}

/// One tag of a post.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tag {
    /// Display name.
    pub name: String,
    /// URL slug, when the dump has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

/// The fields of one post, read through a [`FieldMapping`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Post {
    /// Source id; `None` when no id path matched.
    pub id: Option<String>,
    /// HTML content; `None` when absent or null.
    pub content: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Author.
    pub author: Option<String>,
    /// Date as written in the dump.
    pub date: Option<String>,
    /// Language code.
    pub lang: Option<String>,
}

/// A `_source` object parsed one level deep: its keys with their raw (unparsed) values.
/// A handful of keys, so a vector searched linearly beats a hash map.
#[derive(Default)]
pub struct Source<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Source<'a> {
    /// Parses the top level of a `_source` object; fails when it is not an object.
    pub fn parse(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        SourceSeed { wanted: None }.deserialize(&mut de)
    }

    /// The raw value at a dotted path, if every step exists.
    pub(crate) fn get(&self, path: &str) -> Option<&'a RawValue> {
        let mut segs = path.split('.');
        let first = segs.next()?;
        let mut cur: &'a RawValue = self.fields.iter().find(|(k, _)| k == first)?.1;
        for seg in segs {
            let map: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(cur.get()).ok()?;
            cur = map.get(seg)?;
        }
        Some(cur)
    }
}

/// Deserializes a `_source` object keeping only the top-level keys in `wanted` (all when
/// `None`), skipping the others without allocating: one pass over the document.
pub(crate) struct SourceSeed<'w> {
    pub wanted: Option<&'w [String]>,
}

impl<'de> serde::de::DeserializeSeed<'de> for SourceSeed<'_> {
    type Value = Source<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Source<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SourceSeed<'_> {
    type Value = Source<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a _source object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Source<'de>, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.wanted.is_none_or(|w| w.iter().any(|k| *k == *key)) {
                fields.push((key, map.next_value::<&'de RawValue>()?));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Source { fields })
    }
}

/// Hit-level fields addressable by `_`-prefixed paths.
pub struct HitMeta<'h> {
    /// The hit's `_id`.
    pub id: Option<&'h str>,
}

impl FieldMapping {
    /// The top-level `_source` keys the mapping reads (first segments of its paths).
    pub fn top_level_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = [
            &self.id,
            &self.content,
            &self.title,
            &self.tags,
            &self.author,
            &self.date,
            &self.lang,
        ]
        .into_iter()
        .flatten()
        .filter(|p| !p.starts_with('_'))
        .map(|p| p.split('.').next().unwrap_or(p).to_string())
        .collect();
        // `doc` holds the source of a bulk `update` action.
        keys.push("doc".into());
        keys.sort();
        keys.dedup();
        keys
    }

    /// Reads a post out of a hit.
    pub fn read(&self, hit: &HitMeta<'_>, source: &Source<'_>) -> Post {
        let string = |list: &[String]| {
            list.iter().find_map(|path| {
                if path == "_id" {
                    return hit.id.filter(|s| !s.is_empty()).map(str::to_string);
                }
                source
                    .get(path)
                    .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                    .and_then(text_of)
            })
        };
        let tags = self
            .tags
            .iter()
            .find_map(|path| {
                let v: Value = serde_json::from_str(source.get(path)?.get()).ok()?;
                let tags = tags_of(v);
                (!tags.is_empty()).then_some(tags)
            })
            .unwrap_or_default();
        Post {
            id: string(&self.id),
            content: string(&self.content),
            title: string(&self.title),
            tags,
            author: string(&self.author),
            date: string(&self.date),
            lang: string(&self.lang),
        }
    }
}

/// A field's text: strings, numbers, multilingual objects, first of an array.
fn text_of(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => a.into_iter().find_map(text_of),
        Value::Object(mut m) => match m.remove("default") {
            Some(d) => text_of(d),
            None => m.into_iter().find_map(|(_, v)| match v {
                Value::String(s) => Some(s),
                _ => None,
            }),
        },
        Value::Null => None,
    }
}

/// Tags in any of the shapes in the module doc.
fn tags_of(v: Value) -> Vec<Tag> {
    match v {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Tag {
                name: t.to_string(),
                slug: None,
            })
            .collect(),
        Value::Array(items) => items.into_iter().filter_map(tag_of).collect(),
        Value::Object(m) => m
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::Object(_) => tag_of(v).or(Some(Tag {
                    name: k,
                    slug: None,
                })),
                _ => Some(Tag {
                    name: k,
                    slug: None,
                }),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn tag_of(v: Value) -> Option<Tag> {
    match v {
        Value::Object(mut m) => {
            let slug = m.remove("slug").and_then(text_of);
            let name = m
                .remove("name")
                .and_then(text_of)
                .or_else(|| slug.clone())?;
            Some(Tag { name, slug })
        }
        other => text_of(other).map(|name| Tag { name, slug: None }),
    }
}

impl Post {
    /// Whether the post carries `tag` (case-insensitive, on name or slug).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| {
            t.name.eq_ignore_ascii_case(tag)
                || t.name.to_lowercase() == tag.to_lowercase()
                || t.slug
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(tag))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Post {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        let src = Source::parse(&raw).unwrap();
        FieldMapping::default().read(&HitMeta { id: Some("7-p-1") }, &src)
    }

    #[test]
    fn wordpress_shape() {
        let p = read(
            r#"{"title":"T","content":"<p>x</p>","author":"A","date_gmt":"2017-01-01 00:00:00","date":"later","lang":"en",
            "tag":[{"name":"Poetry","slug":"poetry"},{"name":{"default":"free verse"},"slug":"free-verse"}]}"#,
        );
        assert_eq!(p.id.as_deref(), Some("7-p-1"));
        assert_eq!(p.content.as_deref(), Some("<p>x</p>"));
        assert_eq!(p.date.as_deref(), Some("2017-01-01 00:00:00"));
        assert_eq!(p.tags[1].name, "free verse");
        assert!(p.has_tag("POETRY"));
        assert!(p.has_tag("free-verse"));
        assert!(!p.has_tag("prose"));
    }

    #[test]
    fn multilingual_objects_and_alternative_names() {
        let p = read(
            r#"{"post_title":{"default":"D","en":"E"},"post_content":{"en":"only en"},"tags":"a, b ,,c"}"#,
        );
        assert_eq!(p.title.as_deref(), Some("D"));
        assert_eq!(p.content.as_deref(), Some("only en"));
        assert_eq!(
            p.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn nested_paths_and_tag_maps() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"post":{"body":"hi"},"taxonomy":{"post_tag":{"poetry":{"name":"Poetry","slug":"poetry"},"x":1}}}"#,
        )
        .unwrap();
        let src = Source::parse(&raw).unwrap();
        let m = FieldMapping {
            content: vec!["post.body".into()],
            ..FieldMapping::default()
        };
        let p = m.read(&HitMeta { id: None }, &src);
        assert_eq!(p.content.as_deref(), Some("hi"));
        assert_eq!(p.id, None);
        assert_eq!(p.tags.len(), 2);
        assert!(p.has_tag("poetry"));
    }

    #[test]
    fn null_and_missing_content() {
        assert_eq!(read(r#"{"content":null}"#).content, None);
        assert_eq!(read(r#"{}"#).content, None);
        assert_eq!(read(r#"{"id":42}"#).id.as_deref(), Some("7-p-1"));
    }
}
