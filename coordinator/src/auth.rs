//! Bearer-token authentication with three roles. Each gRPC service is wrapped in an
//! interceptor for its role: a missing or unknown token is UNAUTHENTICATED, a valid token of
//! another role is PERMISSION_DENIED. Tokens are compared in constant time (static ones) or by
//! their SHA-256 (issued ones) and never logged.
//!
//! Two kinds of token (SECURITY.md, finding 4):
//! - **Static** `POET_CLIENT_TOKEN` / `POET_WORKER_TOKEN`, for bootstrap. Setting them turns
//!   authentication on.
//! - **Issued** per identity by `poet token create --role worker|client|viewer --name …`:
//!   stored as their SHA-256 in `api_tokens`, revocable, with a last-used time. The check
//!   stays synchronous (tonic interceptors are): each replica keeps the live tokens in memory
//!   and re-reads them every [`REFRESH`], so a revocation takes effect within that, and
//!   writes the last-used times it saw in the same round.
//!
//! The `viewer` role reads the dashboard and its JSON API and nothing else. A browser signs in
//! once and gets an opaque session cookie (see [`Tokens::session_cookie`]): an expiring,
//! HMAC-signed viewer grant that names the issued token it came from (so revoking the token
//! ends the session) and never holds a token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tonic::{Request, Status};

/// How often a replica re-reads the issued tokens (and so how long a revocation may take).
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Who may call what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Users and scripts: submit, query, cancel, generate, control.
    Client,
    /// Training workers: register, lease, report, upload, download.
    Worker,
    /// Read-only: the dashboard and the JSON API's GETs.
    Viewer,
}

impl Role {
    /// The name stored in `api_tokens.role` and typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    /// Parses [`Self::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "client" => Some(Role::Client),
            "worker" => Some(Role::Worker),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether a token of this role may do what `needed` guards. A client may also read.
    fn may(self, needed: Role) -> bool {
        self == needed || (needed == Role::Viewer && self == Role::Client)
    }
}

/// Who a request is, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The issued token's id; `None` for a static token or with authentication off.
    pub token_id: Option<i64>,
}

/// An issued token as the cache keeps it.
#[derive(Debug, Clone)]
struct Issued {
    id: i64,
    role: Role,
}

/// The configured tokens; without static tokens authentication is off (loopback only,
/// enforced at startup) and issued tokens are not consulted.
#[derive(Clone, Default)]
pub struct Tokens {
    client: Option<Arc<str>>,
    worker: Option<Arc<str>>,
    /// SHA-256 of each live issued token → its id and role (refreshed from Postgres).
    issued: Arc<RwLock<HashMap<[u8; 32], Issued>>>,
    /// Issued tokens used since the last refresh, for `last_used_at`.
    used: Arc<Mutex<HashSet<i64>>>,
    /// Signs dashboard sessions: derived from the client token, so every replica agrees and
    /// rotating the token ends every session.
    session_key: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 an issued token is stored and looked up by. Issued tokens carry 244 random
/// bits, so a fast hash is enough: nothing about them can be guessed offline.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Tokens for both roles (both or neither; validated by the config).
    pub fn new(client: Option<String>, worker: Option<String>) -> Self {
        let session_key = client.as_ref().map(|c| {
            let mut h = Sha256::new();
            h.update(b"poet dashboard session v1\0");
            h.update(c.as_bytes());
            Arc::new(<[u8; 32]>::from(h.finalize()))
        });
        Tokens {
            client: client.map(Into::into),
            worker: worker.map(Into::into),
            session_key,
            ..Default::default()
        }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.client.is_some() || self.worker.is_some()
    }

    /// Who `token` is, if anyone.
    fn identify(&self, token: &str) -> Option<Caller> {
        let is = |t: &Option<Arc<str>>| {
            t.as_ref()
                .is_some_and(|t| ct_eq(t.as_bytes(), token.as_bytes()))
        };
        if is(&self.client) {
            return Some(Caller {
                role: Role::Client,
                token_id: None,
            });
        }
        if is(&self.worker) {
            return Some(Caller {
                role: Role::Worker,
                token_id: None,
            });
        }
        let issued = self
            .issued
            .read()
            .expect("tokens lock")
            .get(&token_digest(token))
            .cloned()?;
        self.used.lock().expect("tokens lock").insert(issued.id);
        Some(Caller {
            role: issued.role,
            token_id: Some(issued.id),
        })
    }

    /// Checks an `authorization` value (`Bearer <token>`, or none) for `needed`.
    pub fn authorize(&self, authorization: Option<&str>, needed: Role) -> Result<Caller, Status> {
        if !self.enabled() {
            return Ok(Caller {
                role: needed,
                token_id: None,
            });
        }
        let Some(value) = authorization else {
            return Err(Status::unauthenticated(
                "missing bearer token (authorization metadata)",
            ));
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        match self.identify(token) {
            Some(c) if c.role.may(needed) => Ok(c),
            Some(c) => Err(Status::permission_denied(format!(
                "a {} token may not call {} methods",
                c.role.as_str(),
                needed.as_str()
            ))),
            None => Err(Status::unauthenticated("invalid bearer token")),
        }
    }

    /// Checks a request's `authorization: Bearer <token>` for `role`.
    pub fn check<T>(&self, req: &Request<T>, role: Role) -> Result<Caller, Status> {
        let value = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or(""));
        self.authorize(value, role)
    }

    /// An interceptor for a service of `role`.
    pub fn interceptor(
        &self,
        role: Role,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + use<> {
        let tokens = self.clone();
        // The caller travels with the request: tags and notes store who set them.
        move |mut req| {
            let caller = tokens.check(&req, role)?;
            req.extensions_mut().insert(caller);
            Ok(req)
        }
    }

    fn session_mac(&self, payload: &str) -> Option<Hmac<Sha256>> {
        let key = self.session_key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_slice()).expect("any key length");
        mac.update(payload.as_bytes());
        Some(mac)
    }

    /// An opaque dashboard session for `caller`: `v1.<expiry>.<token id or 0>.<hmac>`. It grants
    /// `viewer` whatever the token's role, and holds no token. `None` with authentication off.
    pub fn session_cookie(&self, caller: &Caller) -> Option<String> {
        let payload = format!(
            "v1.{}.{}",
            now_s() + SESSION_TTL.as_secs(),
            caller.token_id.unwrap_or(0)
        );
        let mac = self.session_mac(&payload)?.finalize().into_bytes();
        Some(format!("{payload}.{}", hex::encode(mac)))
    }

    /// The viewer a session cookie grants: refused when forged, expired, or made from an
    /// issued token that has since been revoked.
    pub fn check_session(&self, cookie: &str) -> Result<Caller, Status> {
        let bad = || Status::unauthenticated("the dashboard session is not valid; sign in again");
        let (payload, mac) = cookie.rsplit_once('.').ok_or_else(bad)?;
        let mac = hex::decode(mac).map_err(|_| bad())?;
        self.session_mac(payload)
            .ok_or_else(bad)?
            .verify_slice(&mac)
            .map_err(|_| bad())?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(exp), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let exp: u64 = exp.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        if exp <= now_s() {
            return Err(Status::unauthenticated(
                "the dashboard session has expired; sign in again",
            ));
        }
        if id != 0
            && !self
                .issued
                .read()
                .expect("tokens lock")
                .values()
                .any(|t| t.id == id)
        {
            return Err(Status::unauthenticated(
                "the token this session came from was revoked; sign in again",
            ));
        }
        Ok(Caller {
            role: Role::Viewer,
            token_id: (id != 0).then_some(id),
        })
    }

    /// Re-reads the live issued tokens and records the last-used times seen since the last
    /// call. A failure keeps the previous set (and the used ids, for the next round).
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let used: Vec<i64> = self.used.lock().expect("tokens lock").drain().collect();
        if !used.is_empty()
            && let Err(e) =
                sqlx::query("update api_tokens set last_used_at = now() where id = any($1)")
                    .bind(&used)
                    .execute(pool)
                    .await
        {
            self.used.lock().expect("tokens lock").extend(used);
            return Err(e);
        }
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "select id, role, token_sha256 from api_tokens where revoked_at is null",
        )
        .fetch_all(pool)
        .await?;
        let live = rows
            .into_iter()
            .filter_map(|(id, role, digest)| {
                Some((
                    digest.try_into().ok()?,
                    Issued {
                        id,
                        role: Role::parse(&role)?,
                    },
                ))
            })
            .collect();
        *self.issued.write().expect("tokens lock") = live;
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until dropped (one per replica, with authentication on).
    /// The server loads the tokens once before serving, so the first refresh here waits.
    pub async fn keep_fresh(self, pool: PgPool) {
        loop {
            tokio::time::sleep(REFRESH).await;
            if let Err(e) = self.refresh(&pool).await {
                tracing::warn!(error = %e, "issued tokens not refreshed");
            }
        }
    }
}

/// An issued token as `poet token list` shows it (never the token itself).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// Its id.
    pub id: i64,
    /// The name it was created with (unique among live tokens).
    pub name: String,
    /// `client`, `worker` or `viewer`.
    pub role: String,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The database user that made it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When a coordinator last accepted it (to within [`REFRESH`]).
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a token could not be issued or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is empty, too long, or has characters other than `[A-Za-z0-9._@-]`.
    #[error("token name {0:?} must be 1-100 characters of letters, digits, '.', '_', '@' or '-'")]
    BadName(String),
    /// A live token already has the name.
    #[error("a live token is already named {0:?}; revoke it first or pick another name")]
    Exists(String),
    /// No live token has the name.
    #[error("no live token is named {0:?}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.chars().take(120).collect()))
    }
}

/// Issues a token for `role` named `name`; returns it (the only time it is seen) and its row.
/// The token is `poet_<role>_<64 hex digits>`: two random UUIDs, 244 bits from the OS.
pub async fn issue_token(
    pool: &PgPool,
    role: Role,
    name: &str,
) -> Result<(String, TokenInfo), TokenError> {
    check_name(name)?;
    let token = format!(
        "poet_{}_{}{}",
        role.as_str(),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let row = sqlx::query_as::<_, TokenInfo>(
        "insert into api_tokens (name, role, token_sha256) values ($1, $2, $3)
         returning id, name, role, created_at, created_by, revoked_at, last_used_at",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(token_digest(&token).as_slice())
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            TokenError::Exists(name.to_string())
        }
        _ => TokenError::Db(e),
    })?;
    Ok((token, row))
}

/// Revokes the live token named `name`.
pub async fn revoke_token(pool: &PgPool, name: &str) -> Result<TokenInfo, TokenError> {
    sqlx::query_as::<_, TokenInfo>(
        "update api_tokens set revoked_at = now() where name = $1 and revoked_at is null
         returning id, name, role, created_at, created_by, revoked_at, last_used_at",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| TokenError::NotFound(name.to_string()))
}

/// Every issued token, newest first (revoked ones too).
pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "select id, name, role, created_at, created_by, revoked_at, last_used_at
         from api_tokens order by id desc",
    )
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn roles_and_codes() {
        let t = Tokens::new(
            Some("client-token-123456".into()),
            Some("worker-token-123456".into()),
        );
        assert!(
            t.check(&req(Some("client-token-123456")), Role::Client)
                .is_ok()
        );
        assert!(
            t.check(&req(Some("worker-token-123456")), Role::Worker)
                .is_ok()
        );
        assert_eq!(
            t.check(&req(None), Role::Client).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(&req(Some("nope")), Role::Client)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(&req(Some("worker-token-123456")), Role::Client)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(!format!("{t:?}").contains("token-123456"));
    }

    #[test]
    fn disabled_lets_everything_through() {
        assert!(Tokens::default().check(&req(None), Role::Worker).is_ok());
    }

    #[test]
    fn sessions_are_signed_expiring_viewer_grants_that_hold_no_token() {
        let client = "client-6f3a8d1c5e9b2074f6a1d8c3e5b97a20";
        let t = Tokens::new(
            Some(client.into()),
            Some("worker-1e7c4a9f2d6b8053e1c7a4f9d2b68e35".into()),
        );
        let caller = Caller {
            role: Role::Client,
            token_id: None,
        };
        let cookie = t.session_cookie(&caller).unwrap();
        assert!(
            !cookie.contains(client) && !cookie.contains("6f3a8d1c"),
            "{cookie}"
        );
        assert_eq!(t.check_session(&cookie).unwrap().role, Role::Viewer);
        // Another coordinator with the same token accepts it; one with another token does not.
        let same = Tokens::new(Some(client.into()), None);
        assert!(same.check_session(&cookie).is_ok());
        let rotated = Tokens::new(Some("client-0a1b2c3d4e5f60718293a4b5c6d7e8f9".into()), None);
        assert!(rotated.check_session(&cookie).is_err());
        // Tampering with the expiry or the token id breaks the signature.
        let (payload, mac) = cookie.rsplit_once('.').unwrap();
        let longer = payload.replacen("v1.", "v1.9", 1);
        assert!(t.check_session(&format!("{longer}.{mac}")).is_err());
        // An expired one, correctly signed, is refused.
        let old = "v1.1000.0";
        let mac = hex::encode(t.session_mac(old).unwrap().finalize().into_bytes());
        let e = t.check_session(&format!("{old}.{mac}")).unwrap_err();
        assert!(e.message().contains("expired"), "{e:?}");
        // A session from an issued token that is no longer live is refused.
        let gone = t
            .session_cookie(&Caller {
                role: Role::Viewer,
                token_id: Some(7),
            })
            .unwrap();
        assert!(
            t.check_session(&gone)
                .unwrap_err()
                .message()
                .contains("revoked")
        );
        t.issued.write().unwrap().insert(
            [0; 32],
            Issued {
                id: 7,
                role: Role::Viewer,
            },
        );
        assert!(t.check_session(&gone).is_ok());
    }

    #[test]
    fn viewers_read_only_and_clients_may_read() {
        let t = Tokens::new(
            Some("client-token-123456".into()),
            Some("worker-token-123456".into()),
        );
        t.issued.write().unwrap().insert(
            token_digest("poet_viewer_x"),
            Issued {
                id: 3,
                role: Role::Viewer,
            },
        );
        let v = t.check(&req(Some("poet_viewer_x")), Role::Viewer).unwrap();
        assert_eq!(
            v,
            Caller {
                role: Role::Viewer,
                token_id: Some(3)
            }
        );
        assert_eq!(
            t.check(&req(Some("poet_viewer_x")), Role::Client)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(
            t.check(&req(Some("client-token-123456")), Role::Viewer)
                .is_ok()
        );
        assert!(
            t.check(&req(Some("worker-token-123456")), Role::Viewer)
                .is_err()
        );
        assert!(
            t.used.lock().unwrap().contains(&3),
            "use is recorded for last_used_at"
        );
    }
}
