//! Who holds a shared upstream's resource subscriptions, by URI: shards' hubs (counted) and client sessions (by id, once each), so that the upstream hears `resources/subscribe` for the first hold and `resources/unsubscribe` only when the last one is given up.

use std::collections::HashMap;

/// Client sessions' holds a shared upstream keeps at most (over all its URIs): a session that
/// times out without unsubscribing leaves its holds until the upstream restarts, so they are
/// bounded like a per-session process's remembered subscriptions.
pub const MAX_SESSION_HOLDS: usize = 4096;

/// Who holds a subscription.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Holder<'a> {
    /// A shard's hub, for its listen and GET streams (it counts its own listeners).
    Hub,
    /// A client session that sent `resources/subscribe`, by session id.
    Session(&'a str),
}

/// What taking a hold did.
#[derive(Debug, PartialEq)]
pub enum Taken {
    /// The first hold on the URI: the upstream must be told.
    First,
    /// Held already (by others, or by this session before).
    Held,
    /// Not taken: [`MAX_SESSION_HOLDS`] are taken.
    Full,
}

#[derive(Default)]
struct Holders {
    hubs: usize,
    sessions: Vec<Box<str>>,
}

impl Holders {
    fn is_empty(&self) -> bool {
        self.hubs == 0 && self.sessions.is_empty()
    }
}

/// The holds of one shared upstream.
#[derive(Default)]
pub struct Holds {
    by_uri: HashMap<String, Holders>,
    session_holds: usize,
}

impl Holds {
    /// Take a hold on `uri` for `who`; a session's second hold on the same URI is its first.
    pub fn take(&mut self, uri: &str, who: Holder<'_>) -> Taken {
        if let Holder::Session(s) = who {
            if self.held_by(uri, s) {
                return Taken::Held;
            }
            if self.session_holds >= MAX_SESSION_HOLDS {
                return Taken::Full;
            }
        }
        let h = self.by_uri.entry(uri.to_string()).or_default();
        let first = h.is_empty();
        match who {
            Holder::Hub => h.hubs += 1,
            Holder::Session(s) => {
                h.sessions.push(s.into());
                self.session_holds += 1;
            }
        }
        if first {
            Taken::First
        } else {
            Taken::Held
        }
    }

    /// Give up `who`'s hold on `uri`: whether it was the last one (the upstream must be told).
    pub fn give_up(&mut self, uri: &str, who: Holder<'_>) -> bool {
        let Some(h) = self.by_uri.get_mut(uri) else { return false };
        match who {
            Holder::Hub if h.hubs > 0 => h.hubs -= 1,
            Holder::Session(s) => match h.sessions.iter().position(|x| &**x == s) {
                Some(i) => {
                    h.sessions.swap_remove(i);
                    self.session_holds -= 1;
                }
                None => return false,
            },
            Holder::Hub => return false,
        }
        let last = h.is_empty();
        if last {
            self.by_uri.remove(uri);
        }
        last
    }

    /// Give up every hold of session `s` (it ended): the URIs nobody holds any more.
    pub fn forget(&mut self, s: &str) -> Vec<String> {
        let uris: Vec<String> =
            self.by_uri.iter().filter(|(_, h)| h.sessions.iter().any(|x| &**x == s)).map(|(u, _)| u.clone()).collect();
        uris.into_iter().filter(|u| self.give_up(u, Holder::Session(s))).collect()
    }

    /// Whether session `s` holds any URI.
    pub fn holds_any(&self, s: &str) -> bool {
        self.session_holds > 0 && self.by_uri.values().any(|h| h.sessions.iter().any(|x| &**x == s))
    }

    /// Whether session `s` holds `uri`: its streams carry the upstream's updates of it.
    pub fn held_by(&self, uri: &str, s: &str) -> bool {
        self.by_uri.get(uri).is_some_and(|h| h.sessions.iter().any(|x| &**x == s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_hears_the_first_hold_and_the_last_release_whoever_holds() {
        let mut h = Holds::default();
        assert_eq!(h.take("a://x", Holder::Hub), Taken::First);
        assert_eq!(h.take("a://x", Holder::Session("s1")), Taken::Held);
        // a session subscribing again holds once: one unsubscribe ends its hold
        assert_eq!(h.take("a://x", Holder::Session("s1")), Taken::Held);
        assert!(h.held_by("a://x", "s1"));
        assert!(!h.held_by("a://x", "s2"));
        assert!(!h.give_up("a://x", Holder::Session("s1")));
        assert!(!h.held_by("a://x", "s1"));
        // an unsubscribe of a session that holds nothing drops nothing of the hub's
        assert!(!h.give_up("a://x", Holder::Session("s1")));
        assert!(!h.give_up("a://x", Holder::Session("s2")));
        assert!(h.give_up("a://x", Holder::Hub));
        assert!(!h.give_up("a://x", Holder::Hub));

        // the other way round: the hub leaves first, the session's hold keeps the URI
        assert_eq!(h.take("a://y", Holder::Session("s1")), Taken::First);
        assert_eq!(h.take("a://y", Holder::Hub), Taken::Held);
        assert!(!h.give_up("a://y", Holder::Hub));
        assert!(h.give_up("a://y", Holder::Session("s1")));
    }

    #[test]
    fn an_ended_session_gives_up_its_holds_and_session_holds_are_bounded() {
        let mut h = Holds::default();
        h.take("a://1", Holder::Session("s1"));
        h.take("a://2", Holder::Session("s1"));
        h.take("a://2", Holder::Session("s2"));
        h.take("a://3", Holder::Session("s1"));
        h.take("a://3", Holder::Hub);
        assert!(h.holds_any("s1") && !h.holds_any("s3"));
        let mut gone = h.forget("s1");
        gone.sort();
        assert_eq!(gone, ["a://1"]);
        assert!(h.held_by("a://2", "s2"));
        assert!(h.forget("s1").is_empty() && !h.holds_any("s1"));

        let mut h = Holds::default();
        for i in 0..MAX_SESSION_HOLDS {
            assert_eq!(h.take(&format!("a://{i}"), Holder::Session("s")), Taken::First);
        }
        assert_eq!(h.take("a://more", Holder::Session("s")), Taken::Full);
        // a hub's hold is its listeners' (bounded by them), and one given up makes room
        assert_eq!(h.take("a://more", Holder::Hub), Taken::First);
        assert!(h.give_up("a://0", Holder::Session("s")));
        assert_eq!(h.take("a://more", Holder::Session("s")), Taken::Held);
    }
}
