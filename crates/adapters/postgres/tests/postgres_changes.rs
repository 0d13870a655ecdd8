//! LISTEN/NOTIFY: every update or delete of a token is heard, uses are not,
//! a killed listener connection is reported and replaced, heartbeats
//! report the feed's lag, and a connection that goes silent without
//! closing is noticed and replaced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_domain::audit::AuditAction;
use latchkey_domain::validation::{ExpirationInput, GrantDraft, TokenDraft, validate};
use latchkey_domain::{
    Connection, ConnectionName, OrgName, Principal, Provider, SealedSecret, SecretHash, Timestamp, Token, TokenId,
    TokenName, TokenValue, UserName,
};
use latchkey_ports::{ChangeSink, TokenRepository};
use latchkey_postgres::{APPLICATION_NAME, PostgresStore, follow_changes, follow_changes_every};
use latchkey_test_postgres::TestDatabase;
use latchkey_testkit::event;
use rand::rngs::SysRng;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Changed(SecretHash),
    Lost,
    Restored,
    Heartbeat,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl ChangeSink for Recorder {
    fn token_changed(&self, secret_hash: &SecretHash) {
        self.0.lock().unwrap().push(Event::Changed(*secret_hash));
    }
    fn feed_lost(&self) {
        self.0.lock().unwrap().push(Event::Lost);
    }
    fn feed_restored(&self) {
        self.0.lock().unwrap().push(Event::Restored);
    }
    fn heartbeat(&self, round_trip: Duration) {
        assert!(round_trip < Duration::from_secs(5), "{round_trip:?}");
        self.0.lock().unwrap().push(Event::Heartbeat);
    }
}

impl Recorder {
    async fn wait_for(&self, event: &Event) {
        for _ in 0..200 {
            if self.0.lock().unwrap().contains(event) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never heard {event:?}; heard {:?}", self.0.lock().unwrap());
    }

    fn take(&self) -> Vec<Event> {
        let mut events = std::mem::take(&mut *self.0.lock().unwrap());
        events.retain(|event| *event != Event::Heartbeat);
        events
    }
}

fn token() -> Token {
    let draft = TokenDraft {
        allowed_apis: vec!["maps".into()],
        grants: vec![GrantDraft { connection_name: "dw".into(), source: "a.b.c".into() }],
        ..TokenDraft::default()
    };
    let connections = [Connection { name: ConnectionName::new("dw").unwrap(), provider: Provider::Bigquery }];
    let policy = validate(&draft, ExpirationInput::Kept(None), &connections).unwrap().policy;
    let id = TokenId::generate(&mut SysRng).unwrap();
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
    Token {
        name: TokenName::default_for(&id),
        id,
        owner: Principal { org: OrgName::new("acme").unwrap(), user: UserName::new("ana").unwrap() },
        policy,
        secret_hash: TokenValue::generate(&mut SysRng).unwrap().hash(),
        sealed_secret: SealedSecret::new(vec![1]),
        created_at: now,
        updated_at: now,
        last_used_at: None,
        version: 1,
        previous: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_heard_and_a_lost_listener_comes_back() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(database.url(), 4).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    let listening = tokio::spawn(follow_changes(database.url().to_owned(), recorder.clone()));
    recorder.wait_for(&Event::Restored).await;
    recorder.take();

    let original = token();
    store.insert(&original, None, &event(AuditAction::TokenCreated, None, &original)).await.unwrap();
    store.record_last_use(&[(original.id.clone(), original.created_at)]).await.unwrap();
    let renamed = Token { name: TokenName::new("renamed").unwrap(), version: 2, ..original.clone() };
    store.update(&renamed, 1, &event(AuditAction::TokenUpdated, None, &renamed)).await.unwrap();
    recorder.wait_for(&Event::Changed(original.secret_hash)).await;
    assert_eq!(recorder.take(), [Event::Changed(original.secret_hash)], "an insert and a use notify nobody");
    // A roll notifies the value it replaced; the next roll also the
    // previous value it ends, which other instances may have cached too.
    let grace_until = Timestamp::from_unix_micros(1_900_000_000_000_000).unwrap();
    let first = Token {
        secret_hash: TokenValue::generate(&mut SysRng).unwrap().hash(),
        previous: Some(latchkey_domain::PreviousValue { secret_hash: original.secret_hash, expires_at: grace_until }),
        version: 3,
        ..renamed.clone()
    };
    store.roll(&first, 2, &event(AuditAction::TokenRolled, None, &first)).await.unwrap();
    recorder.wait_for(&Event::Changed(original.secret_hash)).await;
    assert_eq!(recorder.take(), [Event::Changed(original.secret_hash)]);
    let second = Token {
        secret_hash: TokenValue::generate(&mut SysRng).unwrap().hash(),
        previous: None,
        version: 4,
        ..first.clone()
    };
    store.roll(&second, 3, &event(AuditAction::TokenRolled, None, &second)).await.unwrap();
    recorder.wait_for(&Event::Changed(original.secret_hash)).await;
    recorder.wait_for(&Event::Changed(first.secret_hash)).await;
    recorder.take();
    store.delete(&original.id, None, &event(AuditAction::TokenDeleted, None, &second)).await.unwrap();
    recorder.wait_for(&Event::Changed(second.secret_hash)).await;
    recorder.take();

    // Kill the listening connection, as a failover or an operator would.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(format!("{APPLICATION_NAME}-{}", std::process::id()))
    .fetch_one(store.pool())
    .await
    .unwrap();
    // The listening connection and the one that sends its heartbeats.
    assert!(killed >= 1, "a listening connection");
    recorder.wait_for(&Event::Lost).await;
    recorder.wait_for(&Event::Restored).await;
    let events = recorder.take();
    let lost = events.iter().position(|e| *e == Event::Lost).unwrap();
    let restored = events.iter().rposition(|e| *e == Event::Restored).unwrap();
    assert!(lost < restored, "lost, then restored: {events:?}");

    // And it hears changes again.
    let again = token();
    store.insert(&again, None, &event(AuditAction::TokenCreated, None, &again)).await.unwrap();
    store.delete(&again.id, None, &event(AuditAction::TokenDeleted, None, &again)).await.unwrap();
    recorder.wait_for(&Event::Changed(again.secret_hash)).await;

    listening.abort();
    store.close().await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_back_with_the_feeds_lag() {
    let database = TestDatabase::create().await;
    let recorder = Arc::new(Recorder::default());
    let listening =
        tokio::spawn(follow_changes_every(database.url().to_owned(), recorder.clone(), Duration::from_millis(100)));
    recorder.wait_for(&Event::Restored).await;
    recorder.wait_for(&Event::Heartbeat).await;
    listening.abort();
    database.drop_database().await;
}

/// A TCP relay that can stall the connections it carries without closing
/// them: what a firewall that silently drops an idle connection looks like
/// from both ends.
struct Relay {
    address: std::net::SocketAddr,
    /// One switch per connection carried so far.
    open: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(Mutex::new(Vec::new()));
        let carried = open.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stall = Arc::new(AtomicBool::new(false));
                let server = TcpStream::connect(&target).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, stall.clone()));
                tokio::spawn(pipe(server_read, client_write, stall.clone()));
                carried.lock().unwrap().push(stall);
            }
        });
        Relay { address, open }
    }

    /// Stalls every connection open now; later ones work.
    fn stall_open_connections(&self) {
        for stall in self.open.lock().unwrap().drain(..) {
            stall.store(true, Ordering::SeqCst);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stall: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else { return };
        if n == 0 {
            return;
        }
        if stall.load(Ordering::SeqCst) {
            // Swallow everything from now on, and keep both ends open.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_goes_silent_is_lost_and_replaced() {
    let database = TestDatabase::create().await;
    let options: PgConnectOptions = database.url().parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let relay = Relay::start(target.clone()).await;
    let relayed = database.url().replacen(&target, &relay.address.to_string(), 1);
    assert_ne!(relayed, database.url(), "the URL names {target}");
    let recorder = Arc::new(Recorder::default());
    let listening = tokio::spawn(follow_changes_every(relayed, recorder.clone(), Duration::from_millis(100)));
    recorder.wait_for(&Event::Restored).await;
    recorder.wait_for(&Event::Heartbeat).await;
    recorder.take();

    relay.stall_open_connections();
    recorder.wait_for(&Event::Lost).await;
    recorder.wait_for(&Event::Restored).await;
    recorder.0.lock().unwrap().clear();
    recorder.wait_for(&Event::Heartbeat).await;

    listening.abort();
    database.drop_database().await;
}
