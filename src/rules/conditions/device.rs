//! `device`: the visitor's device is one of `mobile`, `tablet`, `desktop`
//! (see [`Device`]).

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::{Device as Class, RequestContext};

#[derive(Debug)]
pub struct Device(Vec<Class>);

impl ConditionKind for Device {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Device>) {
        let span = raw.span();
        let mut classes = Vec::new();
        for name in raw.into_inner().into_vec() {
            match Class::parse(&name) {
                Some(class) => classes.push(class),
                None => {
                    let hint = crate::config::closest(&name, &Class::NAMES)
                        .map(|c| format!(", did you mean `{c}`?"))
                        .unwrap_or_default();
                    errors.at(
                        span.clone(),
                        format!("`{name}` is not a device{hint} (mobile, tablet, desktop)"),
                    );
                }
            }
        }
        if !classes.is_empty() {
            out.push(Device(classes));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.contains(&ctx.device())
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("the device is {}", ctx.device().name())
    }
}
