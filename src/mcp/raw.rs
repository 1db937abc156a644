//! Raw JSON on the forwarding path: an object's members kept as the bytes they arrived as, so a call's params and a target's result pass through with only the members the gateway touches rewritten.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object kept as the text it came as: its members' names and values as ranges of that
/// text, so a member can be replaced without parsing the others.
#[derive(Debug, Clone, PartialEq)]
pub struct RawObject {
    /// The text between the braces.
    text: Box<str>,
    /// Name (without quotes; it has no escapes) and value of each member.
    members: Vec<(Range<usize>, Range<usize>)>,
}

impl RawObject {
    /// `json` if it is an object whose member names are all different and free of escapes.
    pub fn parse(json: &str) -> Option<RawObject> {
        RawObject::of(json, &Members::parse(json)?)
    }

    /// The object whose members `m` are, read from `json` (text that contains them all, such as
    /// the whole message they came in); `None` when a name had escapes.
    pub fn of(json: &str, m: &Members) -> Option<RawObject> {
        let base = json.as_ptr() as usize;
        // every borrowed name and value lies inside `json`: their offsets say where
        let at = |s: &str| (s.as_ptr() as usize).checked_sub(base).filter(|o| o + s.len() <= json.len());
        let (Some((first, _)), Some((_, last))) = (m.0.first(), m.0.last()) else {
            return Some(RawObject { text: "".into(), members: Vec::new() });
        };
        let start = at(first)?.checked_sub(1)?;
        let end = at(last.get())? + last.get().len();
        let mut members = Vec::with_capacity(m.0.len());
        for (k, v) in &m.0 {
            let Cow::Borrowed(k) = k else { return None };
            let (ko, vo) = (at(k)? - start, at(v.get())? - start);
            members.push((ko..ko + k.len(), vo..vo + v.get().len()));
        }
        Some(RawObject { text: json.get(start..end)?.into(), members })
    }

    /// The members in order: name (as written, without quotes) and value text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.members.iter().map(|(k, v)| (&self.text[k.clone()], &self.text[v.clone()]))
    }

    /// The value text of member `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The object as JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'}');
    }

    /// Parsed into a tree, for the places that need one.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        for (k, v) in self.iter() {
            // every value parsed once already
            map.insert(k.to_owned(), serde_json::from_str(v).unwrap_or(Value::Null));
        }
        Value::Object(map)
    }
}

/// The members of one JSON object in their order, each value unparsed.
pub struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The members of `json` if it is an object whose member names are all different; `None`
    /// otherwise, and callers then take the `Value` way, whose rules for duplicates (the last
    /// one wins) the raw way does not copy.
    pub fn parse(json: &'a str) -> Option<Members<'a>> {
        if json.trim_start().as_bytes().first() != Some(&b'{') {
            return None;
        }
        let m: Members<'a> = serde_json::from_str(json).ok()?;
        m.distinct().then_some(m)
    }

    /// Whether every member name differs from the others.
    pub fn distinct(&self) -> bool {
        let keys = &self.0;
        if keys.len() <= 16 {
            !keys.iter().enumerate().any(|(i, (k, _))| keys[..i].iter().any(|(j, _)| j == k))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            keys.iter().all(|(k, _)| seen.insert(&**k))
        }
    }

    /// As a tree (the last of members with one name wins, as when parsing into a `Value`).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let mut map = Map::with_capacity(self.0.len());
        for (k, v) in &self.0 {
            map.insert(k.to_string(), serde_json::from_str(v.get())?);
        }
        Ok(Value::Object(map))
    }

    /// The value of member `key`.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }

    fn visit<'de: 'a, A: MapAccess<'de>>(mut map: A) -> Result<Members<'a>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(Key(k)) = map.next_key()? {
            members.push((k, map.next_value()?));
        }
        Ok(Members(members))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Members<'a>, A::Error> {
                Members::visit(map)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A JSON value read in one pass for the forwarding path: an object as its members, unparsed,
/// anything else as a tree.
pub enum Peeked<'a> {
    Object(Members<'a>),
    Other(Value),
}

impl<'de: 'a, 'a> Deserialize<'de> for Peeked<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::SeqAccessDeserializer;
        use serde::de::{Error, SeqAccess};
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Peeked<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Peeked<'a>, A::Error> {
                Members::visit(map).map(Peeked::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Peeked<'a>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Peeked::Other)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Peeked<'a>, E> {
                Ok(Peeked::Other(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Peeked<'a>, E> {
                Ok(Peeked::Other(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Peeked<'a>, E> {
                Ok(Peeked::Other(v.into()))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Peeked<'a>, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| Peeked::Other(Value::Number(n)))
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Peeked<'a>, E> {
                Ok(Peeked::Other(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Peeked<'a>, E> {
                Ok(Peeked::Other(Value::Null))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A member name, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Writes one object member by member.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// A member whose value is JSON text already.
    fn member(&mut self, key: &str, json: &str) {
        self.sep();
        write_str(self.out, key);
        self.out.push(b':');
        self.out.extend_from_slice(json.as_bytes());
    }

    /// A member of a [`RawObject`]: its name is written as it came (it has no escapes).
    fn raw_member(&mut self, key: &str, json: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out.extend_from_slice(json.as_bytes());
    }

    /// A member whose value is a string to encode.
    fn string(&mut self, key: &str, value: &str) {
        self.member(key, "");
        write_str(self.out, value);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // writing a str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Is this JSON text an object (which [`Members::parse`] refused, so it has duplicate names)?
fn is_object(json: &str) -> bool {
    json.trim_start().starts_with('{')
}

/// `json`'s members with `keep`, as an object; `None` when `json` is an object with duplicate
/// names, and `json` itself when it is no object.
fn filtered(json: &str, extra: usize, keep: impl Fn(&str) -> bool) -> Option<Result<Vec<u8>, ()>> {
    match Members::parse(json) {
        Some(m) => {
            let mut out = Vec::with_capacity(json.len() + extra);
            let mut o = Object::open(&mut out);
            m.iter().filter(|(k, _)| keep(k)).for_each(|(k, v)| o.member(k, v.get()));
            o.close();
            Some(Ok(out))
        }
        None if is_object(json) => None,
        None => Some(Err(())),
    }
}

/// A call's params for its target: member `field` set to the string `value` and, with
/// `strip_meta`, the `_meta` members whose names start with it removed (and `_meta` itself once
/// empty). Everything else is copied as it came. `None` when `_meta` is an object with duplicate
/// member names (the tree way decides then).
pub fn rename_params(params: &RawObject, field: &str, value: &str, strip_meta: Option<&str>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(params.text.len() + value.len() + 16);
    let mut obj = Object::open(&mut out);
    let mut renamed = false;
    for (k, v) in params.iter() {
        if k == field {
            obj.string(k, value);
            renamed = true;
        } else if let (Some(prefix), "_meta") = (strip_meta, k) {
            match filtered(v, 0, |mk| !mk.starts_with(prefix))? {
                Ok(meta) if meta.len() > 2 => obj.raw_member(k, std::str::from_utf8(&meta).ok()?),
                Ok(_) => {}
                Err(()) => obj.raw_member(k, v),
            }
        } else {
            obj.raw_member(k, v);
        }
    }
    if !renamed {
        obj.string(field, value);
    }
    obj.close();
    Some(out)
}

/// What a result gets before it reaches the client: members put in (replacing), members added
/// when absent, and members put in its `_meta` (which is made when absent); values are JSON text.
pub struct Additions<'a> {
    /// Replace or add.
    pub set: &'a [(&'a str, &'a str)],
    /// Add when absent.
    pub defaults: &'a [(&'a str, &'a str)],
    /// Replace or add inside `_meta`; left alone when `_meta` is not an object.
    pub meta: &'a [(&'a str, &'a str)],
}

/// `result` with `add` applied, the rest copied as it came. `None` when its `_meta` is an
/// object with duplicate member names.
pub fn add_to_result(result: &RawObject, add: &Additions<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(result.text.len() + 128);
    let mut obj = Object::open(&mut out);
    let mut has_meta = false;
    for (k, v) in result.iter() {
        if add.set.iter().any(|(s, _)| *s == k) {
            continue;
        }
        if k == "_meta" && !add.meta.is_empty() {
            has_meta = true;
            match filtered(v, 64, |mk| !add.meta.iter().any(|(a, _)| *a == mk))? {
                Ok(mut meta) => {
                    // reopen the object to append to it
                    meta.pop();
                    let mut m = Object { first: meta.len() == 1, out: &mut meta };
                    add.meta.iter().for_each(|(mk, mv)| m.member(mk, mv));
                    m.close();
                    obj.raw_member(k, std::str::from_utf8(&meta).ok()?);
                }
                Err(()) => obj.raw_member(k, v),
            }
            continue;
        }
        obj.raw_member(k, v);
    }
    for (k, v) in add.defaults.iter().filter(|(d, _)| result.get(d).is_none()) {
        obj.member(k, v);
    }
    for (k, v) in add.set {
        obj.member(k, v);
    }
    if !has_meta && !add.meta.is_empty() {
        obj.sep();
        obj.out.extend_from_slice(br#""_meta":"#);
        let mut m = Object::open(obj.out);
        add.meta.iter().for_each(|(mk, mv)| m.member(mk, mv));
        m.close();
    }
    obj.close();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn raw(s: &str) -> RawObject {
        RawObject::parse(s).unwrap()
    }

    fn parsed(bytes: Option<Vec<u8>>) -> Option<Value> {
        bytes.map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn members_keep_order_and_bytes_and_refuse_duplicates() {
        let text = r#" {"b" : [1, 2 ],"a\u0041":{"x":1e3},"c":"\u00e9"} "#;
        let m = Members::parse(text).unwrap();
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k, v.get())).collect();
        assert_eq!(got, [("b", "[1, 2 ]"), ("aA", r#"{"x":1e3}"#), ("c", r#""\u00e9""#)]);
        assert_eq!(m.get("aA").map(RawValue::get), Some(r#"{"x":1e3}"#));
        assert!(m.get("x").is_none());
        assert!(Members::parse(r#"{"a":1,"b":2,"a":3}"#).is_none());
        let many: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
        assert!(Members::parse(&format!("{{{many}\"k0\":0}}")).is_none());
        assert_eq!(Members::parse(&format!("{{{many}\"z\":0}}")).map(|m| m.iter().count()), Some(41));
        for not_object in ["[1]", "\"x\"", "null", "{", r#"{"a":}"#] {
            assert!(Members::parse(not_object).is_none(), "{not_object}");
        }
    }

    #[test]
    fn raw_objects_keep_their_text_and_refuse_what_they_cannot_splice() {
        let text = r#" { "a" :1.0 , "b":{"c":[ ]},"d":"\u00e9"}"#;
        let o = raw(text);
        assert_eq!(o.iter().collect::<Vec<_>>(), [("a", "1.0"), ("b", r#"{"c":[ ]}"#), ("d", r#""\u00e9""#)]);
        assert_eq!((o.get("b"), o.get("x")), (Some(r#"{"c":[ ]}"#), None));
        let mut out = Vec::new();
        o.write(&mut out);
        assert_eq!(out, br#"{"a" :1.0 , "b":{"c":[ ]},"d":"\u00e9"}"#);
        assert_eq!(o.to_value(), json!({"a":1.0,"b":{"c":[]},"d":"\u{e9}"}));
        let empty = raw(" {  } ");
        assert_eq!((empty.iter().count(), empty.to_value()), (0, json!({})));
        // a name with an escape, duplicates, no object: the tree way
        for refused in [r#"{"\u0061":1}"#, r#"{"a":1,"a":2}"#, "[1]", "3", r#"{"a":"#] {
            assert!(RawObject::parse(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn rename_params_touches_only_the_name_and_modern_meta() {
        let prefix = Some("io.modelcontextprotocol/");
        let params = raw(
            r#"{"name":"t_echo","arguments":{"text":"a\"b","n":1.50},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        );
        let out = rename_params(&params, "name", "echo", prefix).unwrap();
        // the arguments keep their exact bytes (1.50 would print as 1.5 through a Value)
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"name":"echo","arguments":{"text":"a\"b","n":1.50},"_meta":{"progressToken":"p"}}"#
        );
        let only_modern = raw(r#"{"_meta":{"io.modelcontextprotocol/x":{}},"name":"a_b"}"#);
        assert_eq!(parsed(rename_params(&only_modern, "name", "b", prefix)), Some(json!({"name":"b"})));
        // legacy era: _meta untouched; a missing field is added
        let p = raw(r#"{"_meta":{"io.modelcontextprotocol/x":1},"uri":"t+file:///x"}"#);
        assert_eq!(
            parsed(rename_params(&p, "uri", "file:///x", None)),
            Some(json!({"_meta":{"io.modelcontextprotocol/x":1},"uri":"file:///x"}))
        );
        assert_eq!(parsed(rename_params(&raw("{}"), "name", "x\u{1}", prefix)), Some(json!({"name":"x\u{1}"})));
        // a _meta that is no object passes as it is
        assert_eq!(
            parsed(rename_params(&raw(r#"{"_meta":3}"#), "name", "n", prefix)),
            Some(json!({"_meta":3,"name":"n"}))
        );
        // duplicates anywhere touched: the Value way decides
        assert!(rename_params(&raw(r#"{"_meta":{"a":1,"a":2}}"#), "name", "n", prefix).is_none());
    }

    #[test]
    fn add_to_result_sets_defaults_and_meta() {
        let add = Additions {
            set: &[("ttlMs", "0")],
            defaults: &[("resultType", r#""complete""#)],
            meta: &[("io.modelcontextprotocol/serverInfo", r#"{"name":"rg"}"#)],
        };
        let r = raw(r#"{"content":[{"type":"text","text":"1.0"}],"ttlMs":5,"isError":false}"#);
        let out = String::from_utf8(add_to_result(&r, &add).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"content":[{"type":"text","text":"1.0"}],"isError":false,"resultType":"complete","ttlMs":0,"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"rg"}}}"#
        );
        let r = raw(r#"{"resultType":"x","_meta":{"a":1,"io.modelcontextprotocol/serverInfo":null}}"#);
        assert_eq!(
            parsed(add_to_result(&r, &add)),
            Some(
                json!({"resultType":"x","ttlMs":0,"_meta":{"a":1,"io.modelcontextprotocol/serverInfo":{"name":"rg"}}})
            )
        );
        assert_eq!(
            parsed(add_to_result(&raw(r#"{"_meta":"s"}"#), &add)),
            Some(json!({"_meta":"s","resultType":"complete","ttlMs":0}))
        );
        assert!(add_to_result(&raw(r#"{"_meta":{"a":1,"a":1}}"#), &add).is_none());
        let r = raw(r#"{"_meta":{"io.modelcontextprotocol/serverInfo":1}}"#);
        assert_eq!(
            parsed(add_to_result(&r, &add)),
            Some(
                json!({"resultType":"complete","ttlMs":0,"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"rg"}}})
            )
        );
    }
}
