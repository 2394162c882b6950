//! Rules files as written: serde types only, with spans for later checks.
//! A rule is read in two steps: first what every rule has (this file), then
//! its action's own keys, once the action is known (`action.rs`).

use std::ops::Range;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::action::all_keys;
use super::conditions::RawWhen;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
}

/// What every rule has, and which action keys it wrote where.
#[derive(Debug)]
pub struct RawRule {
    pub name: Spanned<String>,
    pub sites: Option<Vec<Spanned<String>>>,
    pub when: RawWhen,
    pub unless: RawWhen,
    pub action: Spanned<String>,
    /// The action keys present, with their values' spans, for checking
    /// that each belongs to the rule's action.
    pub keys: Vec<(&'static str, Range<usize>)>,
}

const COMMON: [&str; 5] = ["name", "sites", "when", "unless", "action"];

/// Every key a rule may have: the common ones, then every action's.
fn rule_keys() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| COMMON.iter().chain(all_keys()).copied().collect())
}

/// A key of a rule: an unknown one is an error naming them all, so the
/// closest gets suggested.
struct Key(&'static str);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let key = String::deserialize(d)?;
        match rule_keys().iter().find(|k| **k == key) {
            Some(k) => Ok(Key(k)),
            None => Err(de::Error::unknown_field(&key, rule_keys())),
        }
    }
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawRule, D::Error> {
        d.deserialize_struct("RawRule", rule_keys(), RuleVisitor)
    }
}

struct RuleVisitor;

impl<'de> de::Visitor<'de> for RuleVisitor {
    type Value = RawRule;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a rule")
    }

    fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<RawRule, M::Error> {
        let (mut name, mut sites, mut when, mut action) = (None, None, None, None);
        let mut unless = None;
        let mut keys = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            match key {
                "name" => name = Some(map.next_value()?),
                "sites" => sites = Some(map.next_value()?),
                "when" => when = Some(map.next_value()?),
                "unless" => unless = Some(map.next_value()?),
                "action" => action = Some(map.next_value()?),
                _ => keys.push((key, map.next_value::<Spanned<IgnoredAny>>()?.span())),
            }
        }
        Ok(RawRule {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            sites,
            when: when.unwrap_or_default(),
            unless: unless.unwrap_or_default(),
            action: action.ok_or_else(|| de::Error::missing_field("action"))?,
            keys,
        })
    }
}
