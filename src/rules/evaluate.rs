//! Evaluation: the rules for a request's site, in order, into one decision.

use super::action::Action;
use super::decision::{Applied, Decision, Outcome, Render, Request, Trace, Verdict};
use super::kind::Firing;
use super::rule::Rules;
use crate::store::StoredFile;

pub fn evaluate(rules: &Rules, request: &Request<'_>) -> Decision {
    let mut decision = Decision::default();
    let mut render = Render::new(request, &rules.templates);
    let site = &request.site.site;
    // Edits only change an HTML page; an asset only rules that change any
    // file can touch. A missing page counts as HTML (its URL may name one).
    let mut html = request.page.is_none_or(StoredFile::is_html);
    // A hidden file must answer exactly as a missing one, private or not.
    let mut private_if_missing = false;
    for (index, rule) in rules.rules.iter().enumerate() {
        let can_change = html || rule.action.changes_any_file();
        let verdict = if decision.outcome != Outcome::Serve {
            Verdict::NotReached
        } else if decision.rewrite.is_some() && rule.action.terminal() {
            Verdict::Skipped("the request was rewritten by an earlier rule".into())
        } else if !rule.applies_to(site) {
            Verdict::NotForThisSite
        } else {
            match rule.when.check(request.ctx) {
                Err(miss) => {
                    // Another visitor could have matched, and so changed
                    // this response.
                    decision.private |= can_change && miss.about_the_visitor();
                    private_if_missing |= miss.about_the_visitor();
                    if !request.trace {
                        continue;
                    }
                    Verdict::NoMatch(miss.describe(request.ctx))
                }
                Ok(()) => {
                    // These actions read the visitor whatever they do.
                    let reads_visitor =
                        rule.when.about_the_visitor() || rule.action.reads_visitor();
                    private_if_missing |= reads_visitor;
                    if !can_change {
                        if !request.trace {
                            continue;
                        }
                        Verdict::Skipped("it changes HTML pages only, and this is not one".into())
                    } else {
                        decision.private |= reads_visitor;
                        let firing = Firing {
                            index,
                            rule: &rule.name,
                            when: &rule.when,
                            request,
                            render: &mut render,
                        };
                        let applied = rule.action.apply(firing, &mut decision);
                        match applied {
                            Applied::Fired => {
                                // The rules that follow edit what is served.
                                if let (Action::Rewrite(_), Some(to)) =
                                    (&rule.action, &decision.rewrite)
                                {
                                    html = to.page(request).is_none_or(|p| p.is_html());
                                }
                                decision.fired.push(rule.name.clone());
                                Verdict::Fired
                            }
                            Applied::Skipped(why) => Verdict::Skipped(why),
                        }
                    }
                }
            }
        };
        if !request.trace {
            continue;
        }
        decision.trace.push(Trace {
            rule: rule.name.to_string(),
            action: rule.action.name(),
            verdict,
        });
    }
    if decision.outcome == Outcome::Hidden {
        decision.private = private_if_missing;
    }
    decision
}
