//! Evaluation: the rules for a request's site, in order, into one decision:
//! first the lines of the site's `_redirects` that its index finds for the
//! path, then rules/.

use super::action::Action;
use super::decision::{Applied, Decision, Outcome, Render, Request, Trace, Verdict};
use super::kind::Firing;
use super::redirects_file::RedirectsFile;
use super::rule::{Rule, Rules};
use crate::store::{Lookup, StoredFile};

/// Evaluates `redirects` (the site's `_redirects`, if it has one), then
/// `rules`, for `request`.
pub fn evaluate(
    rules: &Rules,
    redirects: Option<&RedirectsFile>,
    request: &Request<'_>,
) -> Decision {
    let mut run = Run {
        decision: Decision::default(),
        render: Render::new(request, &rules.templates),
        request,
        // Edits only change an HTML page; an asset only rules that change
        // any file can touch. A missing page counts as HTML (its URL may
        // name one).
        html: request.page.is_none_or(StoredFile::is_html),
        private_if_missing: false,
    };
    if let Some(file) = redirects {
        for index in file.candidates(&request.ctx.path.path) {
            let line = &file.lines[index];
            run.rule(index, &line.rule, !line.force);
        }
    }
    for (index, rule) in rules.rules.iter().enumerate() {
        run.rule(index, rule, false);
    }
    let mut decision = run.decision;
    if decision.outcome == Outcome::Hidden {
        decision.private = run.private_if_missing;
    }
    // A visitor drawn into (or out of) a `percent` keeps their id.
    if let Some(cookie) = request.ctx.visitor.keep() {
        decision.cookies.push(cookie);
    }
    decision
}

/// One request's evaluation under way.
struct Run<'r> {
    decision: Decision,
    render: Render<'r>,
    request: &'r Request<'r>,
    /// Whether what is served now is an HTML page.
    html: bool,
    /// A hidden file must answer exactly as a missing one, private or not.
    private_if_missing: bool,
}

/// Whether a file answers the path as it is (a `_redirects` line without
/// `!` then does not apply, as on Netlify).
fn file_exists(request: &Request<'_>) -> bool {
    request.page.is_some() || matches!(request.site.lookup(&request.ctx.path), Lookup::AddSlash)
}

impl Run<'_> {
    /// Applies `rule`, the `index`th of its list, if it matches; `shadowed`
    /// when a file at the path keeps it from applying.
    fn rule(&mut self, index: usize, rule: &Rule, shadowed: bool) {
        let request = self.request;
        let decision = &mut self.decision;
        let can_change = self.html || rule.action.changes_any_file();
        let verdict = if decision.outcome != Outcome::Serve {
            Verdict::NotReached
        } else if decision.rewrite.is_some() && rule.action.terminal() {
            Verdict::Skipped("the request was rewritten by an earlier rule".into())
        } else if !rule.applies_to(&request.site.site) {
            Verdict::NotForThisSite
        } else if shadowed && file_exists(request) {
            if !request.trace {
                return;
            }
            Verdict::Skipped(
                "a file exists at this path (a `!` after the line's status applies it anyway)"
                    .into(),
            )
        } else {
            match rule.check(request.ctx) {
                Err(miss) => {
                    // Another visitor could have matched, and so changed
                    // this response.
                    decision.private |= can_change && miss.about_the_visitor();
                    self.private_if_missing |= miss.about_the_visitor();
                    if !request.trace {
                        return;
                    }
                    Verdict::NoMatch(miss.describe(request.ctx))
                }
                Ok(()) => {
                    // These actions read the visitor whatever they do.
                    let reads_visitor = rule.about_the_visitor() || rule.action.reads_visitor();
                    self.private_if_missing |= reads_visitor;
                    if !can_change {
                        if !request.trace {
                            return;
                        }
                        Verdict::Skipped("it changes HTML pages only, and this is not one".into())
                    } else {
                        decision.private |= reads_visitor;
                        let firing = Firing {
                            index,
                            rule: &rule.name,
                            when: &rule.when,
                            request,
                            render: &mut self.render,
                        };
                        match rule.action.apply(firing, decision) {
                            Applied::Fired => {
                                // The rules that follow edit what is served.
                                if let (Action::Rewrite(_), Some(to)) =
                                    (&rule.action, &decision.rewrite)
                                {
                                    self.html = to.page(request).is_none_or(|p| p.is_html());
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
        if request.trace {
            decision.trace.push(Trace {
                rule: rule.name.to_string(),
                origin: rule.origin.clone(),
                action: rule.action.name(),
                verdict,
            });
        }
    }
}
