//! The table of actions: the one place that lists them. Each action's file
//! holds all that is known about it (see [`ActionKind`]); this table turns
//! the list into the `Action` enum, the keys each action takes, reading its
//! keys as written, compiling, and dispatching evaluation.

use std::sync::OnceLock;

use serde::de::{self, Deserialize, DeserializeOwned, DeserializeSeed, IgnoredAny};

use super::block::Block;
use super::decision::{Applied, Decision};
use super::fragment::Fragment;
use super::goal::Goal;
use super::headers::Headers;
use super::inject::Inject;
use super::kind::{ActionKind, Compiling, Firing, TemplateExtra};
use super::offer_local::OfferLocal;
use super::preview::Preview;
use super::redirect::Redirect;
use super::rewrite::Rewrite;
use super::variant::Experiment;

macro_rules! actions {
    ($($variant:ident($kind:ty)),* $(,)?) => {
        /// What a rule does when it matches.
        #[derive(Debug)]
        pub enum Action {
            $($variant($kind)),*
        }

        /// An action's keys as its rule wrote them.
        pub enum RawAction {
            $($variant(<$kind as ActionKind>::Raw)),*
        }

        /// Every action's name, in the order messages list them.
        pub const NAMES: &[&str] = &[$(<$kind as ActionKind>::NAME),*];

        /// The keys the action named `name` takes.
        pub fn keys(name: &str) -> &'static [&'static str] {
            $(if name == <$kind as ActionKind>::NAME {
                return fields::<<$kind as ActionKind>::Raw>();
            })*
            &[]
        }

        impl RawAction {
            /// Reads the keys of the action named `name` from its rule.
            fn read<'de, D: de::Deserializer<'de>>(name: &str, d: D) -> Result<RawAction, D::Error> {
                $(if name == <$kind as ActionKind>::NAME {
                    return Deserialize::deserialize(d).map(RawAction::$variant);
                })*
                Err(de::Error::custom(format!("unknown action `{name}`")))
            }

            pub fn compile(self, cx: &mut Compiling<'_>) -> Option<Action> {
                match self {
                    $(RawAction::$variant(raw) => <$kind>::compile(raw, cx).map(Action::$variant)),*
                }
            }
        }

        impl Action {
            pub fn name(&self) -> &'static str {
                match self {
                    $(Action::$variant(_) => <$kind as ActionKind>::NAME),*
                }
            }

            /// Whether the action reads the visitor whatever it does.
            pub fn reads_visitor(&self) -> bool {
                match self {
                    $(Action::$variant(_) => <$kind as ActionKind>::READS_VISITOR),*
                }
            }

            /// See [`ActionKind::TERMINAL`].
            pub fn terminal(&self) -> bool {
                match self {
                    $(Action::$variant(_) => <$kind as ActionKind>::TERMINAL),*
                }
            }

            /// See [`ActionKind::template`].
            pub fn template(&self) -> Option<(&str, TemplateExtra)> {
                match self {
                    $(Action::$variant(a) => a.template()),*
                }
            }

            /// See [`ActionKind::changes_any_file`].
            pub fn changes_any_file(&self) -> bool {
                match self {
                    $(Action::$variant(a) => a.changes_any_file()),*
                }
            }

            /// Runs the action of a rule that matched.
            pub fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
                match self {
                    $(Action::$variant(a) => a.apply(firing, decision)),*
                }
            }
        }
    };
}

actions! {
    Redirect(Redirect),
    Rewrite(Rewrite),
    Block(Block),
    OfferLocal(OfferLocal),
    Preview(Preview),
    Inject(Inject),
    Headers(Headers),
    Variant(Experiment),
    Goal(Goal),
    Fragment(Fragment),
}

/// Every key some action takes, each once, in table order.
pub fn all_keys() -> &'static [&'static str] {
    static ALL: OnceLock<Vec<&'static str>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static str> = Vec::new();
        for key in NAMES.iter().flat_map(|n| keys(n)) {
            if !all.contains(key) {
                all.push(key);
            }
        }
        all
    })
}

/// Says which actions take `key`, and what `action` takes instead.
pub fn misplaced_key(key: &str, action: &str) -> String {
    let takers: Vec<String> = NAMES
        .iter()
        .filter(|a| keys(a).contains(&key))
        .map(|a| format!("`{a}`"))
        .collect();
    let takes = match keys(action) {
        [] => "no other keys".to_string(),
        keys => keys.join(", "),
    };
    format!(
        "`{key}` does not apply to action `{action}`: it is a key of {} (`{action}` takes {takes})",
        takers.join(", ")
    )
}

/// Reads each rule's action keys from a rules file, given each rule's
/// action (`None`: not one to read). This reads the document itself, not
/// a copy, so spans stay those of the file.
pub fn read_all(
    source: &str,
    actions: &[Option<&str>],
) -> Result<Vec<Option<RawAction>>, toml::de::Error> {
    File(actions).deserialize(toml::Deserializer::new(source))
}

/// The file's `[[rule]]` list, each rule read as its action's keys.
struct File<'a>(&'a [Option<&'a str>]);

impl<'de> DeserializeSeed<'de> for File<'_> {
    type Value = Vec<Option<RawAction>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for File<'_> {
    type Value = Vec<Option<RawAction>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("[[rule]] tables")
    }

    fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "rule" {
                out = map.next_value_seed(Rules(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

struct Rules<'a>(&'a [Option<&'a str>]);

impl<'de> DeserializeSeed<'de> for Rules<'_> {
    type Value = Vec<Option<RawAction>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> de::Visitor<'de> for Rules<'_> {
    type Value = Vec<Option<RawAction>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of rules")
    }

    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::new();
        while let Some(raw) =
            seq.next_element_seed(OneRule(self.0.get(out.len()).copied().flatten()))?
        {
            out.push(raw);
        }
        Ok(out)
    }
}

struct OneRule<'a>(Option<&'a str>);

impl<'de> DeserializeSeed<'de> for OneRule<'_> {
    type Value = Option<RawAction>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0 {
            Some(name) => RawAction::read(name, d).map(Some),
            None => IgnoredAny::deserialize(d).map(|_| None),
        }
    }
}

/// The field names of a struct that derives `Deserialize`, as serde gives
/// them to a deserializer: an action's keys are its raw struct's fields.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(&'static [&'static str]);
    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = de::value::Error;

        fn deserialize_struct<V: de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("only the fields were asked for"))
        }

        fn deserialize_any<V: de::Visitor<'de>>(
            self,
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut found = Fields(&[]);
    let _ = T::deserialize(&mut found);
    found.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_raw_structs_fields_in_order() {
        assert_eq!(keys("redirect"), ["to", "to_site", "status"]);
        assert_eq!(keys("inject"), ["template", "html", "selector", "position"]);
        assert_eq!(keys("nope"), [] as [&str; 0]);
        assert_eq!(keys("rewrite"), ["to", "to_site"]);
        assert_eq!(&all_keys()[..4], ["to", "to_site", "status", "page"]);
    }
}
