//! Who is calling, and what they may do: the one place of authentication and authorization.
//!
//! A server runs either without authentication ([`Auth::disabled`]: it listens on loopback only
//! and every caller is [`Principal::Local`], trusted as an admin) or with an [`AuthConfig`] read
//! from a YAML file ([`AuthConfig::load`]): users, their groups, who is an admin, and bearer
//! tokens stored as their SHA-256. Tokens created through the API (`POST /tokens`) are stored the
//! same way in the database and join the table at start ([`Auth::enabled`]) or when created.
//!
//! Every request that needs a caller takes a [`Principal`] (an actix extractor: a missing,
//! malformed or unknown token is answered 401 before the body is read). What it may do is
//! decided here, in [`Auth::authorize`] and its siblings, from the principal and the owner of
//! the workflow concerned:
//! - a user's token (no scope) acts as the user: it sees and changes the workflows the user
//!   owns and those of every user who shares a group with them, runs their jobs, and lists only
//!   those; an admin's sees and changes everything. A workflow it may not see is answered 404,
//!   exactly as one that does not exist, so that ids of others' workflows leak nothing;
//! - a runner token (a scope: one workflow, one user's workflows, a group's members' workflows)
//!   may only claim, report and heartbeat, and only in its scope; anything else is 403.
//!
//! This module must never do I/O: the caller looks the owner up and hands it in.

use crate::server::error::{ApiError, ApiErrorKind};
use crate::wire::TokenScopeSpec;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use torc_core::WorkflowId;
use torc_store::{TokenRecord, TokenScope};

/// What every token made by [`new_token`] starts with (so that a leaked one is recognizable).
pub const TOKEN_PREFIX: &str = "torc_";
/// The longest bearer token accepted.
pub const MAX_TOKEN_BYTES: usize = 512;
/// The longest user, group or token name accepted.
pub const MAX_NAME_BYTES: usize = 128;

/// A SHA-256 digest.
type Digest32 = [u8; 32];

/// The SHA-256 of a token, as the configuration and the database store it (lowercase hex).
pub fn hash_token(token: &str) -> String {
    hex(&digest(token))
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads 64 hex digits into a digest.
fn parse_hex_digest(text: &str) -> Result<Digest32, &'static str> {
    let text = text.trim();
    if text.len() != 64 {
        return Err("expected 64 hexadecimal digits (a SHA-256)");
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let nibble = |c: u8| (c as char).to_digit(16);
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err("expected 64 hexadecimal digits (a SHA-256)"),
        }
    }
    Ok(out)
}

/// Random bytes from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| {
        ApiError::new(
            ApiErrorKind::Internal,
            format!("no randomness for a token: {e}"),
        )
    })?;
    Ok(buf)
}

/// A new random token: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn new_token() -> Result<String, ApiError> {
    Ok(format!("{TOKEN_PREFIX}{}", hex(&random_bytes::<32>()?)))
}

/// A short random suffix for a generated token name.
pub(crate) fn random_suffix() -> Result<String, ApiError> {
    Ok(hex(&random_bytes::<4>()?))
}

// ---------------------------------------------------------------------------------------------
// The configuration file.

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    user: String,
    sha256: String,
    #[serde(default)]
    scope: Option<TokenScopeSpec>,
}

/// Why an auth configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read auth configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth configuration {path}: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("auth configuration {path}: {problem}")]
    Invalid {
        path: PathBuf,
        problem: ConfigProblem,
    },
}

/// What is wrong in a configuration that reads as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error(
        "{what} name {name:?} must have 1 to {MAX_NAME_BYTES} bytes and no control characters"
    )]
    BadName { what: &'static str, name: String },
    #[error("user {0:?} is listed twice")]
    DuplicateUser(String),
    #[error("token {0:?} is listed twice")]
    DuplicateToken(String),
    #[error("tokens {0:?} and {1:?} have the same sha256")]
    DuplicateHash(String, String),
    #[error("token {token:?}: user {user:?} is not in `users`")]
    UnknownUser { token: String, user: String },
    #[error("token {token:?}: sha256: {reason}")]
    BadHash { token: String, reason: &'static str },
    #[error("token {token:?}: scope: {reason}")]
    BadScope { token: String, reason: String },
}

/// A configured user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    groups: BTreeSet<String>,
    admin: bool,
}

/// Users, groups and the tokens of the configuration file, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    users: BTreeMap<String, User>,
    /// Group name → its members.
    groups: BTreeMap<String, BTreeSet<String>>,
    tokens: Vec<(Digest32, TokenHolder)>,
}

fn check_name(what: &'static str, name: &str) -> Result<(), ConfigProblem> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ConfigProblem::BadName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

impl AuthConfig {
    /// Reads and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<AuthConfig, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AuthConfig::parse(&text).map_err(|e| match e {
            ParseError::Syntax(source) => AuthConfigError::Syntax {
                path: path.to_path_buf(),
                source,
            },
            ParseError::Invalid(problem) => AuthConfigError::Invalid {
                path: path.to_path_buf(),
                problem,
            },
        })
    }

    /// Reads and checks a configuration from YAML text.
    pub fn from_yaml(text: &str) -> Result<AuthConfig, AuthConfigError> {
        AuthConfig::parse(text).map_err(|e| match e {
            ParseError::Syntax(source) => AuthConfigError::Syntax {
                path: PathBuf::from("<text>"),
                source,
            },
            ParseError::Invalid(problem) => AuthConfigError::Invalid {
                path: PathBuf::from("<text>"),
                problem,
            },
        })
    }

    fn parse(text: &str) -> Result<AuthConfig, ParseError> {
        // An empty file is a configuration with no users: nobody gets in.
        let file: ConfigFile = if text.trim().is_empty() {
            ConfigFile {
                users: Vec::new(),
                tokens: Vec::new(),
            }
        } else {
            serde_norway::from_str(text).map_err(ParseError::Syntax)?
        };
        let mut config = AuthConfig::default();
        for u in file.users {
            check_name("user", &u.name)?;
            for g in &u.groups {
                check_name("group", g)?;
                config
                    .groups
                    .entry(g.clone())
                    .or_default()
                    .insert(u.name.clone());
            }
            let user = User {
                groups: u.groups.into_iter().collect(),
                admin: u.admin,
            };
            if config.users.insert(u.name.clone(), user).is_some() {
                return Err(ConfigProblem::DuplicateUser(u.name).into());
            }
        }
        let mut names = BTreeSet::new();
        let mut hashes: HashMap<Digest32, String> = HashMap::new();
        for t in file.tokens {
            check_name("token", &t.name)?;
            if !names.insert(t.name.clone()) {
                return Err(ConfigProblem::DuplicateToken(t.name).into());
            }
            let hash = parse_hex_digest(&t.sha256).map_err(|reason| ConfigProblem::BadHash {
                token: t.name.clone(),
                reason,
            })?;
            if let Some(other) = hashes.insert(hash, t.name.clone()) {
                return Err(ConfigProblem::DuplicateHash(other, t.name).into());
            }
            let scope =
                match t.scope {
                    None => None,
                    Some(spec) => Some(config.check_scope(spec).map_err(|reason| {
                        ConfigProblem::BadScope {
                            token: t.name.clone(),
                            reason,
                        }
                    })?),
                };
            let grant = config
                .grant(t.name.clone(), t.user, scope)
                .map_err(|user| ConfigProblem::UnknownUser {
                    token: t.name.clone(),
                    user,
                })?;
            config.tokens.push((hash, grant));
        }
        Ok(config)
    }

    /// A scope as written, checked against the users and groups: exactly one of its keys, naming
    /// a configured user or a group that has members.
    pub(crate) fn check_scope(&self, spec: TokenScopeSpec) -> Result<TokenScope, String> {
        match (spec.workflow, spec.user, spec.group) {
            (Some(id), None, None) if id > 0 => Ok(TokenScope::Workflow(WorkflowId(id))),
            (Some(id), None, None) => Err(format!("workflow ids start at 1, not {id}")),
            (None, Some(user), None) if self.users.contains_key(&user) => {
                Ok(TokenScope::User(user))
            }
            (None, Some(user), None) => Err(format!("user {user:?} is not in `users`")),
            (None, None, Some(group)) if self.groups.contains_key(&group) => {
                Ok(TokenScope::Group(group))
            }
            (None, None, Some(group)) => Err(format!("no user is in group {group:?}")),
            _ => Err("give exactly one of `workflow`, `user` or `group`".into()),
        }
    }

    /// The grant of a token of `user`; `Err(user)` when the user is not configured.
    fn grant(
        &self,
        name: String,
        user: String,
        scope: Option<TokenScope>,
    ) -> Result<TokenHolder, String> {
        match self.users.get(&user) {
            Some(u) => Ok(TokenHolder {
                token: name,
                admin: u.admin,
                user,
                scope,
            }),
            None => Err(user),
        }
    }

    /// Whether `user` is configured.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The configuration file's tokens, in its order.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenHolder> {
        self.tokens.iter().map(|(_, t)| t)
    }

    /// Whether a token of this name is in the configuration file.
    pub fn has_token_named(&self, name: &str) -> bool {
        self.tokens.iter().any(|(_, t)| t.token == name)
    }

    /// The members of `group` (empty for an unknown group).
    pub fn members(&self, group: &str) -> impl Iterator<Item = &str> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|m| m.iter().map(String::as_str))
    }

    /// `user` and every user who shares a group with them.
    fn peers<'a>(&'a self, user: &'a str) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::from([user]);
        if let Some(u) = self.users.get(user) {
            for g in &u.groups {
                out.extend(self.members(g));
            }
        }
        out
    }

    /// Whether `user` may see and change a workflow owned by `owner`: their own, or one whose
    /// owner shares a group with them. A workflow without an owner is only an admin's business.
    fn shares(&self, user: &str, owner: Option<&str>) -> bool {
        let Some(owner) = owner else {
            return false;
        };
        if user == owner {
            return true;
        }
        match (self.users.get(user), self.users.get(owner)) {
            (Some(u), Some(o)) => !u.groups.is_disjoint(&o.groups),
            _ => false,
        }
    }
}

enum ParseError {
    Syntax(serde_norway::Error),
    Invalid(ConfigProblem),
}

impl From<ConfigProblem> for ParseError {
    fn from(p: ConfigProblem) -> ParseError {
        ParseError::Invalid(p)
    }
}

// ---------------------------------------------------------------------------------------------
// The server's state, and the principal.

/// Authentication as the server runs it: off, or a configuration and the table of tokens.
#[derive(Clone)]
pub struct Auth {
    inner: Option<Arc<Enabled>>,
}

struct Enabled {
    config: AuthConfig,
    tokens: RwLock<HashMap<Digest32, Arc<TokenHolder>>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Auth::disabled"),
            Some(e) => f
                .debug_struct("Auth")
                .field("users", &e.config.users.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No authentication is configured: a caller on the loopback interface, trusted as an admin.
    Local,
    /// The holder of a bearer token.
    Token(Arc<TokenHolder>),
}

/// A bearer token's holder, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    /// The token's name (in the configuration or given when it was created).
    pub token: String,
    pub user: String,
    /// Whether the user is an admin; it counts only for a token without a scope.
    pub admin: bool,
    /// `None`: the token acts as its user. Otherwise a runner token of this reach.
    pub scope: Option<TokenScope>,
}

/// What a request does to a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read or change it: status, listings, cancel, reset, resume, delete.
    Manage,
    /// Run its jobs: claim, report, heartbeat.
    Run,
}

/// A workflow's owner, as the caller found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Not looked up: [`Auth::needs_owner`] said the decision does not depend on it.
    NotLookedUp,
    /// There is no such workflow.
    NoSuchWorkflow,
    /// The workflow's `user` (`None`: created without one).
    Is(Option<&'a str>),
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiErrorKind::Unauthorized, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiErrorKind::Forbidden, message)
}

fn hidden(id: WorkflowId) -> ApiError {
    ApiError::new(ApiErrorKind::NotFound, format!("workflow {id} not found"))
}

fn runner_only(holder: &TokenHolder) -> ApiError {
    forbidden(format!(
        "token {:?} is a runner token: it may only claim, report and send heartbeats",
        holder.token
    ))
}

impl Auth {
    /// No authentication: every caller is [`Principal::Local`].
    pub fn disabled() -> Auth {
        Auth { inner: None }
    }

    /// Authentication by `config`'s tokens and `stored` ones (created through the API). A stored
    /// token whose user is no longer configured is left out (with a warning): removing a user
    /// from the file revokes their tokens.
    pub fn enabled(config: AuthConfig, stored: Vec<TokenRecord>) -> Auth {
        let mut tokens: HashMap<Digest32, Arc<TokenHolder>> = config
            .tokens
            .iter()
            .map(|(h, g)| (*h, Arc::new(g.clone())))
            .collect();
        for t in stored {
            let Ok(hash) = parse_hex_digest(&t.sha256) else {
                tracing::warn!(token = %t.name, "stored token has a malformed hash; ignored");
                continue;
            };
            match config.grant(t.name.clone(), t.user, t.scope) {
                Ok(grant) => {
                    tokens.entry(hash).or_insert_with(|| Arc::new(grant));
                }
                Err(user) => {
                    tracing::warn!(token = %t.name, %user, "stored token of an unconfigured user; ignored");
                }
            }
        }
        Auth {
            inner: Some(Arc::new(Enabled {
                config,
                tokens: RwLock::new(tokens),
            })),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The configuration, when authentication is on.
    pub fn config(&self) -> Option<&AuthConfig> {
        self.inner.as_deref().map(|e| &e.config)
    }

    /// Who sent a request with this `Authorization` header (`None`: no header).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, ApiError> {
        let Some(enabled) = &self.inner else {
            return Ok(Principal::Local);
        };
        let Some(value) = authorization else {
            return Err(unauthorized(
                "this server requires a token: send `Authorization: Bearer TOKEN` \
                 (torc --token, or TORC_API_TOKEN)",
            ));
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(unauthorized(
                    "the Authorization header must be `Bearer TOKEN`",
                ))
            }
        };
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized(format!(
                "a token has 1 to {MAX_TOKEN_BYTES} bytes"
            )));
        }
        // A lookup by the token's SHA-256: a guess must match a whole digest, and how long the
        // lookup takes tells nothing about stored tokens that could be used against them.
        let tokens = enabled
            .tokens
            .read()
            .map_err(|_| ApiError::new(ApiErrorKind::Internal, "token table poisoned"))?;
        match tokens.get(&digest(token)) {
            Some(holder) => Ok(Principal::Token(Arc::clone(holder))),
            None => Err(unauthorized("unknown token")),
        }
    }

    /// Adds a token created through the API (already stored). Refused (409) when a token of
    /// the same hash is known.
    pub(crate) fn add_token(&self, record: &TokenRecord) -> Result<(), ApiError> {
        let enabled = self.require_enabled()?;
        let hash = parse_hex_digest(&record.sha256)
            .map_err(|r| ApiError::new(ApiErrorKind::Internal, r))?;
        let grant = enabled
            .config
            .grant(
                record.name.clone(),
                record.user.clone(),
                record.scope.clone(),
            )
            .map_err(|user| ApiError::unprocessable(format!("user {user:?} is not configured")))?;
        let mut tokens = enabled
            .tokens
            .write()
            .map_err(|_| ApiError::new(ApiErrorKind::Internal, "token table poisoned"))?;
        if tokens.contains_key(&hash) {
            return Err(ApiError::new(ApiErrorKind::Conflict, "token already known"));
        }
        tokens.insert(hash, Arc::new(grant));
        Ok(())
    }

    /// Forgets a token created through the API (already deleted from the database).
    pub(crate) fn remove_token(&self, record: &TokenRecord) -> Result<(), ApiError> {
        let enabled = self.require_enabled()?;
        let hash = parse_hex_digest(&record.sha256)
            .map_err(|r| ApiError::new(ApiErrorKind::Internal, r))?;
        let mut tokens = enabled
            .tokens
            .write()
            .map_err(|_| ApiError::new(ApiErrorKind::Internal, "token table poisoned"))?;
        // A hash also in the file stays: the file's token is not the API's to revoke.
        if !enabled.config.tokens.iter().any(|(h, _)| *h == hash) {
            tokens.remove(&hash);
        }
        Ok(())
    }

    fn require_enabled(&self) -> Result<&Enabled, ApiError> {
        self.inner.as_deref().ok_or_else(|| {
            ApiError::unprocessable(
                "authentication is not configured on this server, so tokens mean nothing here: \
                 start it with an auth configuration (torc-server --auth-config FILE)",
            )
        })
    }

    /// Whether deciding `access` to a workflow needs its owner. It does not for a trusted local
    /// caller, an admin's token, a runner token of one workflow, or a runner token asked to
    /// manage (always refused): the hot path of those pays no lookup.
    pub fn needs_owner(&self, who: &Principal, access: Access) -> bool {
        match who {
            Principal::Local => false,
            Principal::Token(h) => match &h.scope {
                None => !h.admin,
                Some(TokenScope::Workflow(_)) => false,
                Some(_) => access == Access::Run,
            },
        }
    }

    /// May `who` have `access` to workflow `id`, owned by `owner`? A user's token is answered
    /// 404 for a workflow it may not see (as for one that does not exist); a runner token 403
    /// outside its scope, whether the workflow exists or not.
    pub fn authorize(
        &self,
        who: &Principal,
        id: WorkflowId,
        access: Access,
        owner: Owner<'_>,
    ) -> Result<(), ApiError> {
        let Principal::Token(h) = who else {
            return Ok(());
        };
        let owner_name = match owner {
            Owner::Is(o) => o,
            Owner::NoSuchWorkflow => None,
            Owner::NotLookedUp if !self.needs_owner(who, access) => None,
            Owner::NotLookedUp => {
                return Err(ApiError::new(
                    ApiErrorKind::Internal,
                    "authorization asked without the workflow's owner",
                ))
            }
        };
        let config = &self.require_enabled()?.config;
        match (&h.scope, access) {
            (None, _) if h.admin => Ok(()),
            (None, _) if config.shares(&h.user, owner_name) => Ok(()),
            (None, _) => Err(hidden(id)),
            (Some(_), Access::Manage) => Err(runner_only(h)),
            (Some(scope), Access::Run) => {
                let inside = match scope {
                    TokenScope::Workflow(w) => *w == id,
                    TokenScope::User(u) => owner_name == Some(u.as_str()),
                    TokenScope::Group(g) => {
                        owner_name.is_some_and(|o| config.members(g).any(|m| m == o))
                    }
                };
                if inside {
                    Ok(())
                } else {
                    Err(forbidden(format!(
                        "token {:?} may not run workflow {id}: it is for {}",
                        h.token,
                        describe(scope)
                    )))
                }
            }
        }
    }

    /// Whether `who` may see a workflow of `owner` in a listing. Runner tokens may not list.
    pub fn may_list(&self, who: &Principal) -> Result<(), ApiError> {
        match who {
            Principal::Token(h) if h.scope.is_some() => Err(runner_only(h)),
            _ => Ok(()),
        }
    }

    /// Whether `who` sees a workflow of `owner` in a listing (after [`Auth::may_list`]).
    pub fn sees(&self, who: &Principal, owner: Option<&str>) -> bool {
        match (who, self.config()) {
            (Principal::Local, _) | (_, None) => true,
            (Principal::Token(h), Some(config)) => {
                h.scope.is_none() && (h.admin || config.shares(&h.user, owner))
            }
        }
    }

    /// The owner of a new workflow whose spec names `spec_user`: without authentication, the
    /// spec's; with it, the caller, who may name someone else only as an admin.
    pub fn owner_for_new_workflow(
        &self,
        who: &Principal,
        spec_user: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        match who {
            Principal::Local => Ok(spec_user),
            Principal::Token(h) if h.scope.is_some() => Err(runner_only(h)),
            Principal::Token(h) => match spec_user {
                Some(u) if u != h.user && !h.admin => Err(forbidden(format!(
                    "the spec names user {u:?}: only an admin may create a workflow for another \
                     user (leave `user` out to own it yourself)"
                ))),
                Some(u) => Ok(Some(u)),
                None => Ok(Some(h.user.clone())),
            },
        }
    }

    /// Whether `who` may create, list and revoke tokens: admins only (with authentication on).
    pub fn may_create_tokens(&self, who: &Principal) -> Result<&AuthConfig, ApiError> {
        match who {
            Principal::Token(h) if h.scope.is_some() => return Err(runner_only(h)),
            Principal::Token(h) if !h.admin => {
                return Err(forbidden(format!(
                    "only an admin may create tokens; {:?} is not one",
                    h.user
                )))
            }
            _ => {}
        }
        Ok(&self.require_enabled()?.config)
    }
}

fn describe(scope: &TokenScope) -> String {
    match scope {
        TokenScope::Workflow(w) => format!("workflow {w} only"),
        TokenScope::User(u) => format!("the workflows of user {u:?}"),
        TokenScope::Group(g) => format!("the workflows of group {g:?}'s members"),
    }
}

impl Principal {
    /// The owners whose workflows a shared runner of this principal may be handed by a shared
    /// claim (`POST /runners/claim`): `None` for any owner (a trusted local caller, an admin's
    /// token), the scope's user or the group's members for a shared runner token, the user and
    /// everyone sharing a group with them for a user's token. A runner token of one workflow
    /// may not make shared claims (403). The list is sorted and without duplicates.
    pub fn claimable_owners(&self, auth: &Auth) -> Result<Option<Vec<String>>, ApiError> {
        let Principal::Token(h) = self else {
            return Ok(None);
        };
        let config = &auth.require_enabled()?.config;
        let owners: BTreeSet<&str> = match &h.scope {
            None if h.admin => return Ok(None),
            None => config.peers(&h.user),
            Some(TokenScope::User(u)) => BTreeSet::from([u.as_str()]),
            Some(TokenScope::Group(g)) => config.members(g).collect(),
            Some(TokenScope::Workflow(w)) => {
                return Err(forbidden(format!(
                    "token {:?} is for workflow {w} only: it may not claim from other workflows",
                    h.token
                )))
            }
        };
        Ok(Some(owners.into_iter().map(str::to_string).collect()))
    }

    /// The user behind the principal (`None` for a trusted local caller).
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::Local => None,
            Principal::Token(h) => Some(&h.user),
        }
    }
}

/// The principal of a request: authenticated from its `Authorization` header by the server's
/// [`Auth`]. Handlers take it first, so that a request without a valid token is refused (401)
/// before its body is read.
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<Auth>>() {
            Some(auth) => auth.authenticate(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            ),
            None => Err(ApiError::new(
                ApiErrorKind::Internal,
                "the server has no auth state",
            )),
        };
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests;
