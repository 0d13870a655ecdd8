//! The command line of SPEC §10, and the one-shot commands.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use latchkey_app::{UserError, UserService};
use latchkey_domain::{Connection, ConnectionName, OrgName, Principal, Provider, UserName};
use latchkey_ports::{CreateConnectionError, CreateUserError};

use crate::database::{DatabaseUrl, Storage};

/// What every command reads from the environment besides its flags' own
/// variables (which `--help` shows beside each flag).
pub const ENVIRONMENT: &str = "\
Environment:
  LATCHKEY_SECRET_KEY  the server key that seals stored token values (32 bytes,
                       base64 or hex); with SQLite it is generated beside the
                       database file when unset, with PostgreSQL it is required.
                       Never a flag: a command line is visible to every user of
                       the host.
  LATCHKEY_PREVIOUS_SECRET_KEY
                       the key being rotated away from: values sealed under it
                       still open (see `latchkey keys rotate`)
  RUST_LOG             which log lines to write, e.g. info, debug or
                       latchkey_http=debug (default: info for serve and gateway,
                       warn for the other commands)";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// Issue, manage and enforce API access tokens for data APIs.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about, after_help = ENVIRONMENT)]
pub struct Cli {
    /// How log lines (on standard error) are written.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Tokens API and the web page.
    #[command(after_help = ENVIRONMENT)]
    Serve(Box<ServeArgs>),
    /// Stand in front of a data API as a reverse proxy that authorizes
    /// every request before forwarding it.
    #[command(after_help = ENVIRONMENT)]
    Gateway(Box<GatewayArgs>),
    /// Manage built-in users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage connections to data warehouses.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Manage the server key that stored token values are sealed under.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a shell completion script, e.g. `latchkey completions bash >
    /// /etc/bash_completion.d/latchkey`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff): latchkey's, or a command's, e.g.
    /// `latchkey man > latchkey.1`, `latchkey man serve > latchkey-serve.1`.
    Man {
        /// The command whose page to print (serve, gateway, users,
        /// connections, keys, completions, man).
        command: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every stored token value under a new server key. With a
    /// SQLite key file: a new key is made (kept in `.key.next` until the end,
    /// so that a rotation cut short resumes where it stopped), then becomes
    /// `.key`, the old one `.key.previous`; stop `serve` first. With
    /// LATCHKEY_SECRET_KEY: it is the new key, and
    /// LATCHKEY_PREVIOUS_SECRET_KEY the current one (see docs/security.md).
    #[command(after_help = ENVIRONMENT)]
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// An address to listen on: `HOST:PORT`, where the host is an IP address
/// (`[::1]` for IPv6) or a name such as `localhost`, resolved when binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress(String);

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080")?;
        if host.is_empty() {
            return Err("the host is missing: use 0.0.0.0:PORT to listen on every interface".into());
        }
        port.parse::<u16>().map_err(|_| format!("{port:?} is not a port (0 to 65535)"))?;
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ListenAddress {
    /// Binds the first address the host resolves to that can be bound.
    pub async fn bind(&self) -> Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(self.0.as_str()).await.with_context(|| format!("cannot listen on {}", self.0))
    }
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://PATH (sqlite:///ABSOLUTE/PATH), postgres://… or memory://
    #[arg(long = "database", env = "LATCHKEY_DATABASE_URL", default_value = "sqlite://latchkey.db")]
    pub url: DatabaseUrl,
    /// The most connections to PostgreSQL this process opens.
    #[arg(long, env = "LATCHKEY_POSTGRES_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub postgres_pool_size: u32,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on, HOST:PORT (port 0 picks a free port).
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: ListenAddress,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Do not create the first org, user and connection on an empty database.
    #[arg(long)]
    pub no_bootstrap: bool,
    /// The most tokens one user may have.
    #[arg(long, env = "LATCHKEY_MAX_TOKENS_PER_USER")]
    pub max_tokens_per_user: Option<u64>,
    /// The largest request body, in bytes.
    #[arg(long, env = "LATCHKEY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a request may take, in seconds, before it is answered 408.
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// The most tokens the authorize cache keeps; 0 turns it off.
    #[arg(long, env = "LATCHKEY_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,
    /// The longest a cached token lives without a change evicting it, in
    /// seconds: the backstop if a change notification is ever missed.
    #[arg(long, env = "LATCHKEY_CACHE_TTL_SECONDS", default_value_t = 300)]
    pub cache_ttl_seconds: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// How often recorded token uses are written, in milliseconds.
    #[arg(long, env = "LATCHKEY_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
    /// The org whose data APIs /v3/forward-auth protects (connection names
    /// are unique only within an org, so a token of another org is
    /// refused). Without it, forward-auth is off.
    #[arg(long, env = "LATCHKEY_ORG", requires = "forward_auth_headers", value_parser = parse_org)]
    pub org: Option<OrgName>,
    /// The proxy that asks /v3/forward-auth, and so the one set of headers
    /// read for the original request: nginx, caddy, traefik or envoy.
    #[arg(long, env = "LATCHKEY_FORWARD_AUTH_HEADERS", requires = "org")]
    pub forward_auth_headers: Option<latchkey_http::HeaderSet>,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// One item of a comma-separated list of addresses and ranges; the spaces
/// around it (`a, b`) are the list's, not the item's.
fn ip_range(raw: &str) -> Result<latchkey_domain::ip::IpRange, String> {
    raw.trim().parse().map_err(|error| format!("{raw:?}: {error}"))
}

fn parse_org(raw: &str) -> Result<OrgName, String> {
    OrgName::new(raw).map_err(|error| format!("the org {error}"))
}

/// Where clients come from, how long and how many of them are served, and
/// how many failures they may make: the same for `serve` and the gateway.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Failed authentications (bad user keys or JWTs, unknown, malformed or
    /// expired token values) one client address may make per minute,
    /// sustained, on each surface.
    #[arg(long, env = "LATCHKEY_AUTH_FAILURES_PER_MINUTE", default_value_t = 600)]
    pub auth_failures_per_minute: u32,
    /// Failed authentications one client address may make at once.
    #[arg(long, env = "LATCHKEY_AUTH_FAILURE_BURST", default_value_t = 100)]
    pub auth_failure_burst: u32,
    /// Addresses or ranges never rate limited, comma-separated (the data
    /// services that call /v3/authorize for many end users), e.g.
    /// 10.0.0.0/8,192.0.2.7.
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_EXEMPT", value_delimiter = ',', value_parser = ip_range)]
    pub rate_limit_exempt: Vec<latchkey_domain::ip::IpRange>,
    /// Proxies in front, comma-separated addresses or ranges: a request
    /// from one of them names its client in X-Forwarded-For, and the client
    /// is the rightmost address there that is not one of them (for rate
    /// limiting and for tokens restricted to addresses). From any other
    /// peer, X-Forwarded-For is ignored.
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = ip_range)]
    pub trusted_proxies: Vec<latchkey_domain::ip::IpRange>,
    /// The most client connections open at once; more wait to be accepted.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// How long a client has to send a request's headers, in seconds
    /// (also how long an idle keep-alive connection is kept).
    #[arg(long, env = "LATCHKEY_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 15)]
    pub header_read_timeout_seconds: u64,
}

impl NetworkArgs {
    pub fn rate_limits(&self) -> latchkey_http::RateLimits {
        latchkey_http::RateLimits {
            failures_per_minute: self.auth_failures_per_minute,
            burst: self.auth_failure_burst,
            exempt: self.rate_limit_exempt.clone(),
            trusted_proxies: latchkey_domain::ip::TrustedProxies::new(self.trusted_proxies.clone()),
        }
    }

    pub fn connection_limits(&self) -> latchkey_http::server::ConnectionLimits {
        latchkey_http::server::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            ..latchkey_http::server::ConnectionLimits::default()
        }
    }
}

/// An identity provider whose JWTs are accepted as user credentials, besides
/// the built-in user keys (SPEC §8).
#[derive(Debug, Args)]
pub struct JwtArgs {
    /// A file holding the HS256 shared secret (at least 32 bytes).
    #[arg(long, env = "LATCHKEY_JWT_SECRET_FILE", conflicts_with = "jwt_jwks_file")]
    pub jwt_secret_file: Option<std::path::PathBuf>,
    /// A JWKS file with the identity provider's RS256 / ES256 public keys.
    #[arg(long, env = "LATCHKEY_JWT_JWKS_FILE", conflicts_with = "oidc_issuer")]
    pub jwt_jwks_file: Option<std::path::PathBuf>,
    /// An OpenID Connect issuer (https://…): its keys are found through
    /// its discovery document and fetched again when it rotates them. Its
    /// tokens' `iss` must be this URL, exactly.
    #[arg(long, env = "LATCHKEY_OIDC_ISSUER", conflicts_with_all = ["jwt_secret_file", "jwt_issuer"])]
    pub oidc_issuer: Option<String>,
    /// The required `iss` claim (with --jwt-secret-file or --jwt-jwks-file).
    #[arg(long, env = "LATCHKEY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The required `aud` claim.
    #[arg(long, env = "LATCHKEY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The claim that names the user.
    #[arg(long, env = "LATCHKEY_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// The claim that names the user's org.
    #[arg(long, env = "LATCHKEY_JWT_ORG_CLAIM", default_value = "org")]
    pub jwt_org_claim: String,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    #[arg(long, env = "LATCHKEY_JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,
    /// What makes a JWT's user an org admin: CLAIM (a claim that is the
    /// boolean true) or CLAIM=VALUE (a claim that is VALUE or a list
    /// holding it, e.g. roles=latchkey-admin). Without it, no JWT user is
    /// an admin.
    #[arg(long, env = "LATCHKEY_JWT_ADMIN_CLAIM")]
    pub jwt_admin_claim: Option<latchkey_jwt::AdminClaim>,
}

impl JwtArgs {
    /// The JWT authenticator configured, if any. With `--oidc-issuer` this
    /// reads the provider's discovery document and keys first.
    pub async fn authenticator(&self) -> Result<Option<latchkey_jwt::JwtAuthenticator>> {
        use latchkey_jwt::{JwtAuthenticator, JwtSettings, OidcSettings};
        if self.jwt_secret_file.is_none() && self.jwt_jwks_file.is_none() && self.oidc_issuer.is_none() {
            if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
                bail!(
                    "a JWT issuer or audience is set but none of --jwt-secret-file, --jwt-jwks-file or --oidc-issuer"
                );
            }
            return Ok(None);
        }
        let issuer = match (&self.oidc_issuer, &self.jwt_issuer) {
            (Some(oidc), _) => oidc.clone(),
            (None, Some(issuer)) => issuer.clone(),
            (None, None) => bail!("--jwt-issuer is required with --jwt-secret-file or --jwt-jwks-file"),
        };
        let settings = JwtSettings {
            issuer,
            audience: self.jwt_audience.clone().context("--jwt-audience is required with JWT verification")?,
            user_claim: self.jwt_user_claim.clone(),
            org_claim: self.jwt_org_claim.clone(),
            leeway_seconds: self.jwt_leeway_seconds,
            admin_claim: self.jwt_admin_claim.clone(),
        };
        let authenticator = if let Some(issuer) = &self.oidc_issuer {
            JwtAuthenticator::discover(OidcSettings::new(issuer.clone()), settings).await?
        } else if let Some(path) = &self.jwt_secret_file {
            let secret = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let secret = secret.trim_ascii_end();
            JwtAuthenticator::hs256(secret, settings)?
        } else if let Some(path) = &self.jwt_jwks_file {
            let json = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            JwtAuthenticator::from_jwks(&json, settings)?
        } else {
            return Ok(None);
        };
        Ok(Some(authenticator))
    }
}

impl ServeArgs {
    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_ms.max(10))
    }
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The data API to protect, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "LATCHKEY_UPSTREAM")]
    pub upstream: String,
    /// The org whose data API this is: connection names are unique only
    /// within an org, so a token of another org is refused.
    #[arg(long, env = "LATCHKEY_ORG", value_parser = parse_org)]
    pub org: OrgName,
    /// The address to listen on, HOST:PORT (port 0 picks a free port).
    #[arg(long, env = "LATCHKEY_GATEWAY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: ListenAddress,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The largest request body read to find its source, in bytes.
    #[arg(long, env = "LATCHKEY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a request may take, body upload included, in seconds.
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// How long the upstream may take to start answering, in seconds.
    #[arg(long, env = "LATCHKEY_UPSTREAM_TIMEOUT_SECONDS", default_value_t = 30)]
    pub upstream_timeout_seconds: u64,
    /// The most tokens the authorize cache keeps; 0 turns it off. It serves
    /// only while the store's feed of changes made by other processes is
    /// heard.
    #[arg(long, env = "LATCHKEY_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,
    /// The longest a cached token lives without a change evicting it.
    #[arg(long, env = "LATCHKEY_CACHE_TTL_SECONDS", default_value_t = 300)]
    pub cache_ttl_seconds: u64,
    /// An address of its own for GET /metrics (Prometheus): every path of
    /// the gateway's listener goes to the data API. Without it, the
    /// gateway's metrics are not served.
    #[arg(long, env = "LATCHKEY_METRICS_LISTEN")]
    pub metrics_listen: Option<ListenAddress>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (and the org when new) and print the user's key.
    Create(CreateUserArgs),
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The user's name.
    pub name: String,
    /// The user's organization.
    #[arg(long)]
    pub org: String,
    /// Make the user an org admin: sees and revokes every token of the org
    /// (never their values), reads the org's audit log, sets its policy.
    #[arg(long)]
    pub admin: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Create the SQLite file when it does not exist (a provisioning script
    /// preparing a database before `serve --no-bootstrap`).
    #[arg(long)]
    pub create: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Add a connection to an existing org.
    Create(CreateConnectionArgs),
}

#[derive(Debug, Args)]
pub struct CreateConnectionArgs {
    /// The connection's name, unique in the org.
    pub name: String,
    /// The org.
    #[arg(long)]
    pub org: String,
    /// bigquery, snowflake, redshift, postgres, databricks or carto_dw.
    #[arg(long)]
    pub provider: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Create the SQLite file when it does not exist.
    #[arg(long)]
    pub create: bool,
}

/// The store a one-shot command changes: never `memory://` (nothing would
/// remain), and a SQLite file only if it exists or `create` says to make
/// it, so that a command run in the wrong directory does not quietly make
/// an empty database and a key the running server never sees.
async fn durable_stores(args: &DatabaseArgs, create: bool) -> Result<Storage> {
    if matches!(args.url, DatabaseUrl::Memory) {
        bail!("memory:// keeps nothing after this command ends; name a sqlite:// or postgres:// database");
    }
    if !create {
        args.url.must_exist("pass --create to make a new database here")?;
    }
    args.url.open(args.postgres_pool_size).await
}

/// `latchkey users create NAME --org ORG`: prints the key as the only line
/// on standard output.
pub async fn create_user(args: CreateUserArgs) -> Result<()> {
    let principal = Principal {
        org: OrgName::new(&args.org).with_context(|| format!("invalid org name {:?}", args.org))?,
        user: UserName::new(&args.name).with_context(|| format!("invalid user name {:?}", args.name))?,
    };
    let stores = durable_stores(&args.database, args.create).await?;
    let users = UserService::new(stores.users.clone(), stores.catalog.clone());
    let role = if args.admin { latchkey_domain::Role::Admin } else { latchkey_domain::Role::Member };
    match users.create_user(&principal, role).await {
        Ok(key) => {
            println!("{}", key.expose());
            Ok(())
        }
        Err(UserError::Create(CreateUserError::UserExists)) => {
            bail!("user {:?} already exists in org {:?}", args.name, args.org)
        }
        Err(e) => Err(e.into()),
    }
}

/// `latchkey connections create NAME --org ORG --provider PROVIDER`.
pub async fn create_connection(args: CreateConnectionArgs) -> Result<()> {
    let org = OrgName::new(&args.org).with_context(|| format!("invalid org name {:?}", args.org))?;
    let connection = Connection {
        name: ConnectionName::new(&args.name).with_context(|| format!("invalid connection name {:?}", args.name))?,
        provider: args.provider.parse::<Provider>().with_context(|| format!("{:?}", args.provider))?,
    };
    let stores = durable_stores(&args.database, args.create).await?;
    let users = UserService::new(stores.users.clone(), stores.catalog.clone());
    match users.create_connection(&org, &connection).await {
        Ok(()) => {
            eprintln!("created connection {:?} ({}) in org {:?}", args.name, connection.provider, args.org);
            Ok(())
        }
        Err(CreateConnectionError::NameTaken) => bail!("org {:?} already has a connection {:?}", args.org, args.name),
        Err(CreateConnectionError::UnknownOrg) => {
            bail!("there is no org {:?}; create a user in it first (latchkey users create NAME --org ORG)", args.org)
        }
        Err(e) => Err(e.into()),
    }
}

/// `latchkey keys rotate`: re-seals every stored value under the new key,
/// then (with key files) makes it the key in use.
pub async fn rotate_keys(args: RotateArgs) -> Result<()> {
    if matches!(args.database.url, DatabaseUrl::Memory) {
        bail!("memory:// holds nothing to re-seal");
    }
    args.database.url.must_exist("name the database `latchkey serve` uses")?;
    let rotation = crate::secret_key::Rotation::prepare(&args.database.url)?;
    if let crate::secret_key::Rotation::Files { resumed: true, next, .. } = &rotation {
        eprintln!("resuming the rotation to the key in {}", next.display());
    }
    let stores = args.database.url.open(args.database.postgres_pool_size).await?;
    let mut total = latchkey_app::RotationReport::default();
    // A value an instance still on the old key sealed during the walk, or
    // one changed under it, is picked up by another pass.
    for pass in 1..=3 {
        let rotation_pass = latchkey_app::KeyRotation::new(stores.tokens.clone(), rotation.keyring().sealer());
        let report = rotation_pass
            .run(|so_far| eprintln!("pass {pass}: {} re-sealed, {} seen", so_far.resealed, so_far.seen()))
            .await?;
        total.resealed += report.resealed;
        if pass == 1 {
            total.current = report.current;
        }
        total.unreadable = report.unreadable;
        if report.resealed == 0 && report.skipped == 0 {
            break;
        }
    }
    if !total.unreadable.is_empty() {
        eprintln!(
            "{} token values open under none of the keys (sealed under a key not given, or damaged); they stay \
             as they are, and their owners see \"token\": null. First ids: {}",
            total.unreadable.len(),
            total.unreadable.iter().take(10).map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    rotation.complete()?;
    println!("re-sealed {} token values under the new key; {} were under it already", total.resealed, total.current);
    Ok(())
}

/// `latchkey completions SHELL`: the script, generated from the same
/// definitions that parse the command line.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "latchkey", &mut std::io::stdout());
}

/// `latchkey man [COMMAND]`: a manual page, generated from the same
/// definitions that parse the command line.
pub fn man(command: Option<&str>) -> Result<()> {
    let root = <Cli as clap::CommandFactory>::command();
    let page = match command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name) else {
                let names: Vec<&str> = root.get_subcommands().map(clap::Command::get_name).collect();
                bail!("no command {name:?}; the commands are {}", names.join(", "));
            };
            sub.clone()
                .display_name(format!("latchkey-{name}"))
                .bin_name(format!("latchkey {name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    match clap_mangen::Man::new(page).render(&mut std::io::stdout().lock()) {
        // `latchkey man | head` closed the pipe: not a failure.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
