//! `hours`: weekly windows in a time zone, like `{ days = ["fri", "sat"],
//! from = "18:00", to = "23:59", tz = "Europe/Rome" }`; a list means any
//! of them. A window whose `to` is earlier than its `from` runs past
//! midnight into the next day. Time zones come from the IANA database
//! built into outpost, so daylight saving time is followed.

use jiff::tz::TimeZone;
use serde::{de, Deserialize};
use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Hours(Vec<Window>);

#[derive(Debug)]
struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight; `to` may be 1440 (`24:00`).
    from: u16,
    to: u16,
    tz: TimeZone,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    days: Option<Spanned<OneOrMany<String>>>,
    from: Spanned<String>,
    to: Spanned<String>,
    tz: Spanned<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `HH:MM` in minutes after midnight; `24:00` only where `end` allows.
fn minutes(text: &str, end: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn window(raw: RawWindow, errors: &mut Errors<'_>) -> Option<Window> {
    let mut days = [raw.days.is_none(); 7];
    if let Some(written) = &raw.days {
        let list = written.get_ref().clone().into_vec();
        if list.is_empty() {
            errors.at(
                written.span(),
                "`days` is empty: the window would never open (leave `days` out for every day)"
                    .into(),
            );
        }
        for day in list {
            let short = day.to_ascii_lowercase();
            match DAYS.iter().position(|d| short.starts_with(d)) {
                Some(i) => days[i] = true,
                None => errors.at(
                    written.span(),
                    format!("`{day}` is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                ),
            }
        }
    }
    let from = minutes(raw.from.get_ref(), false);
    let to = minutes(raw.to.get_ref(), true);
    for (value, raw) in [(from, &raw.from), (to, &raw.to)] {
        if value.is_none() {
            let text = raw.get_ref();
            errors.at(
                raw.span(),
                format!("`{text}` is not a time of day like 18:00"),
            );
        }
    }
    if from.is_some() && from == to {
        errors.at(raw.to.span(), "`from` and `to` are the same time".into());
    }
    let tz = TimeZone::get(raw.tz.get_ref())
        .map_err(|_| {
            let hint = closest_zone(raw.tz.get_ref())
                .map(|z| format!(", did you mean `{z}`?"))
                .unwrap_or_default();
            errors.at(
                raw.tz.span(),
                format!(
                    "`{}` is not a time zone of the IANA database{hint} (like Europe/Rome or America/New_York)",
                    raw.tz.get_ref()
                ),
            )
        })
        .ok()?;
    Some(Window {
        days,
        from: from?,
        to: to?,
        tz,
    })
}

/// The zone name closest to a misspelt one.
fn closest_zone(name: &str) -> Option<String> {
    let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::config::closest(name, &names).map(str::to_string)
}

impl Window {
    fn holds(&self, now: jiff::Timestamp) -> bool {
        let local = self.tz.to_offset(now).to_datetime(now);
        let day = usize::from(local.weekday().to_monday_zero_offset() as u8);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        if self.from < self.to {
            self.days[day] && (self.from..self.to).contains(&minute)
        } else {
            // Past midnight: the evening of a listed day, or the small
            // hours after one.
            (self.days[day] && minute >= self.from)
                || (self.days[(day + 6) % 7] && minute < self.to)
        }
    }
}

/// One window or a list of them. Read by hand: serde's untagged enums
/// lose the positions of what is inside.
#[derive(Debug)]
pub struct RawWindows(Vec<RawWindow>);

impl<'de> Deserialize<'de> for RawWindows {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<RawWindows, D::Error> {
        struct Windows;
        impl<'de> de::Visitor<'de> for Windows {
            type Value = RawWindows;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a window `{ days, from, to, tz }` or a list of them")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<RawWindows, M::Error> {
                let one = RawWindow::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawWindows(vec![one]))
            }
            fn visit_seq<S: de::SeqAccess<'de>>(self, seq: S) -> Result<RawWindows, S::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawWindows)
            }
        }
        d.deserialize_any(Windows)
    }
}

impl ConditionKind for Hours {
    type Raw = RawWindows;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Hours>) {
        let windows: Vec<Window> = raw
            .0
            .into_iter()
            .filter_map(|w| window(w, errors))
            .collect();
        if !windows.is_empty() {
            out.push(Hours(windows));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.iter().any(|w| w.holds(ctx.now))
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("{} is outside its hours", ctx.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(minutes("18:00", false), Some(1080));
        assert_eq!(minutes("00:00", false), Some(0));
        assert_eq!(minutes("23:59", false), Some(1439));
        assert_eq!(minutes("24:00", true), Some(1440));
        for bad in [
            "24:00", "18", "8:00", "18:60", "25:00", "18:00:00", "ab:cd", "",
        ] {
            assert_eq!(minutes(bad, false), None, "{bad}");
        }
    }
}
