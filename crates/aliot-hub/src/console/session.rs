//! The console's sessions: a random id in a cookie, a server-side table bounded in count with
//! idle expiry, a CSRF token per session, and the request checks (cookie, CSRF token, `Origin`
//! and `Sec-Fetch-Site`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use subtle::ConstantTimeEq as _;

use crate::registry::random_alnum;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "aliot_console";
/// The header that carries the CSRF token on `fetch` calls.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Letters and digits of a session id (about 238 bits) and of a CSRF token.
const ID_LEN: usize = 40;

/// One signed-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    /// The CSRF token of its forms and `fetch` calls.
    pub(crate) csrf: String,
    /// Who signed in: `admin token` or the AccessKeyId.
    pub(crate) who: String,
    last_seen: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

/// What a request's cookie found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A live session (its idle time restarted).
    Live(Session),
    /// The cookie named a session that expired (or was evicted): back to sign-in, with a
    /// message.
    Expired,
    /// No session cookie.
    None,
}

/// The session table.
///
/// Bounded: at most `max` sessions. A sign-in past that first drops expired sessions, then the
/// one idle longest (its browser goes back to sign-in). Sessions idle longer than `idle` expire.
#[derive(Debug)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    max: usize,
    idle: Duration,
}

impl Sessions {
    pub(crate) fn new(max: usize, idle: Duration) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a consistent map (every change is one call).
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `who`; returns its id (for the cookie).
    pub(crate) fn create(&self, who: String) -> (String, Session) {
        let id = random_alnum(ID_LEN);
        let session = Session {
            csrf: random_alnum(ID_LEN),
            who,
            last_seen: Instant::now(),
        };
        let mut table = self.lock();
        if table.len() >= self.max {
            let idle = self.idle;
            table.retain(|_, s| s.last_seen.elapsed() < idle);
        }
        if table.len() >= self.max {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                table.remove(&k);
            }
        }
        table.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session the request's cookie names.
    pub(crate) fn lookup(&self, headers: &HeaderMap) -> Lookup {
        let Some(id) = cookie(headers, COOKIE) else {
            return Lookup::None;
        };
        let mut table = self.lock();
        match table.get_mut(id) {
            Some(s) if s.last_seen.elapsed() < self.idle => {
                s.last_seen = Instant::now();
                Lookup::Live(s.clone())
            }
            Some(_) => {
                table.remove(id);
                Lookup::Expired
            }
            None => Lookup::Expired,
        }
    }

    /// Ends the request's session.
    pub(crate) fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(id);
        }
    }

    /// How many sessions the table holds.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of a new session (`Secure` when served over TLS).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that clears the session cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether a state-changing request comes from the console's own pages: `Sec-Fetch-Site`,
/// when sent, is `same-origin` (or `none`: typed by the user); `Origin`, when sent, is this
/// host. Returns the reason of a refusal.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" && site != "none" {
            return Err(format!(
                "the request came from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ok = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o == host);
        if !ok {
            return Err(format!("the request came from another origin ({origin})"));
        }
    }
    Ok(())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub(crate) fn csrf_matches(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(session.csrf.as_bytes().ct_eq(p.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_table_is_bounded_and_evicts_the_longest_idle() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let (a, _) = sessions.create("a".into());
        let (_b, _) = sessions.create("b".into());
        let (_c, _) = sessions.create("c".into());
        assert_eq!(sessions.len(), 2);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={a}")).expect("a header"),
        );
        assert!(
            matches!(sessions.lookup(&h), Lookup::Expired),
            "the oldest was evicted"
        );
    }

    #[test]
    fn origins_of_other_sites_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
    }
}
