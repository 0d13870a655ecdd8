//! PostgreSQL as the judge of IP ranges: its `cidr` and `inet` readers are
//! an independent, long-used implementation of the same notation, so
//! latchkey's reading (`latchkey_domain::ip`) is compared with theirs on a
//! few thousand generated texts.
//!
//! - Every text latchkey accepts, PostgreSQL's `cidr` accepts as the same
//!   network. (Not the converse: PostgreSQL also reads IPv4 shorthand such
//!   as `10.1/16`, which latchkey refuses on purpose.)
//! - Every text latchkey refuses for host bits, PostgreSQL refuses for the
//!   same reason, and the network latchkey suggests is PostgreSQL's
//!   `network(text::inet)`.
//! - `address::inet <<= range::cidr` agrees with `IpRange::contains` for
//!   pairs of the same family as PostgreSQL sees it.
//!
//! The cases come from a fixed seed, so a failure is reproducible; the
//! failing texts are printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use latchkey_domain::ip::{IpRange, IpRangeError};
use latchkey_test_postgres::TestDatabase;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::{Connection, Executor, PgConnection};

const SEED: u64 = 0x1a7c_4e7e;

/// Texts per kind of case: valid ranges, ranges with host bits, mutants.
const CASES: usize = 1500;

/// Reads a text as `cidr`, and as `inet` for the network it names, without
/// failing the statement: a refusal comes back as its message and detail.
/// (PostgreSQL 16's `pg_input_is_valid` would do, but the tests also run
/// against 15.)
const READ_CIDR: &str = r"
CREATE FUNCTION read_cidr(t text, OUT network text, OUT prefix integer, OUT refusal text, OUT inet_network text)
LANGUAGE plpgsql AS $$
DECLARE
    c cidr;
    message text;
    detail text;
BEGIN
    BEGIN
        c := t::cidr;
        network := host(c);
        prefix := masklen(c);
    EXCEPTION WHEN invalid_text_representation THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        refusal := message || ' ' || detail;
    END;
    BEGIN
        inet_network := network(t::inet)::text;
    EXCEPTION WHEN invalid_text_representation THEN
        inet_network := NULL;
    END;
END
$$";

/// An address and prefix in the one address space of `latchkey_domain::ip`
/// (IPv4 as `::ffff:a.b.c.d`), computed here apart from the module.
fn space(address: IpAddr, prefix: u8) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => ((0xffff_u128 << 32) | u128::from(v4.to_bits()), prefix + 96),
        IpAddr::V6(v6) => (v6.to_bits(), prefix),
    }
}

fn ours(range: IpRange) -> (u128, u8) {
    space(range.network(), range.prefix_len())
}

/// PostgreSQL's `host` and `masklen`, in the same space.
fn theirs(host: &str, prefix: i32) -> (u128, u8) {
    let address: IpAddr = host.parse().unwrap_or_else(|e| panic!("PostgreSQL printed {host:?}: {e}"));
    space(address, u8::try_from(prefix).unwrap())
}

/// PostgreSQL's `network(inet)` text (`10.0.0.0/8`), in the same space.
fn theirs_network(text: &str) -> (u128, u8) {
    let (host, prefix) = text.split_once('/').unwrap_or_else(|| panic!("PostgreSQL printed {text:?}"));
    theirs(host, prefix.parse().unwrap())
}

fn mask(prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) }
}

/// IPv6 bits from the regions worth covering: random, IPv4-mapped,
/// IPv4-compatible, NAT64, and with runs of zero groups.
fn v6_bits(rng: &mut StdRng) -> u128 {
    match rng.random_range(0..6) {
        0 => rng.random(),
        1 => (0xffff_u128 << 32) | u128::from(rng.random::<u32>()),
        2 => u128::from(rng.random::<u32>()),
        3 => (0x0064_ff9b_u128 << 96) | u128::from(rng.random::<u32>()),
        _ => {
            let mut bits: u128 = rng.random();
            for group in 0..8 {
                if rng.random_bool(0.6) {
                    bits &= !(0xffff_u128 << (16 * group));
                }
            }
            bits
        }
    }
}

/// `bits` written in one of the RFC 4291 forms std's reader accepts.
fn write_v6(rng: &mut StdRng, bits: u128) -> String {
    let groups: Vec<u16> = Ipv6Addr::from_bits(bits).segments().to_vec();
    let text = match rng.random_range(0..5) {
        // RFC 5952, as std prints it.
        0 => Ipv6Addr::from_bits(bits).to_string(),
        // Eight groups, with or without leading zeros.
        1 => groups.iter().map(|g| format!("{g:04x}")).collect::<Vec<_>>().join(":"),
        2 => groups.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":"),
        // Six groups and a dotted IPv4 tail.
        3 => {
            let head: Vec<String> = groups[..6].iter().map(|g| format!("{g:x}")).collect();
            format!("{}:{}", head.join(":"), Ipv4Addr::from_bits(bits as u32))
        }
        // `::` in place of a run of zero groups, not always the longest.
        _ => {
            let runs: Vec<(usize, usize)> = (0..8)
                .filter(|&start| groups[start] == 0 && (start == 0 || groups[start - 1] != 0))
                .map(|start| (start, (start..8).take_while(|&i| groups[i] == 0).count()))
                .collect();
            if runs.is_empty() {
                Ipv6Addr::from_bits(bits).to_string()
            } else {
                let (start, len) = runs[rng.random_range(0..runs.len())];
                let part = |range: &[u16]| range.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
                format!("{}::{}", part(&groups[..start]), part(&groups[start + len..]))
            }
        }
    };
    if rng.random_bool(0.2) { text.to_uppercase() } else { text }
}

/// A range's text: IPv4 or IPv6, with host bits set when `host_bits`.
fn range_text(rng: &mut StdRng, host_bits: bool) -> String {
    let v4 = rng.random_bool(0.5);
    let max: u8 = if v4 { 32 } else { 128 };
    let prefix = if host_bits { rng.random_range(0..max) } else { rng.random_range(0..=max) };
    let width = if v4 { 32 } else { 128 };
    let host_mask = !mask(prefix + (128 - width)) & if v4 { u128::from(u32::MAX) } else { u128::MAX };
    let raw = if v4 { u128::from(rng.random::<u32>()) } else { v6_bits(rng) };
    let mut bits = raw & !host_mask;
    if host_bits {
        let host = loop {
            let host = rng.random::<u128>() & host_mask;
            if host != 0 {
                break host;
            }
        };
        bits |= host;
    }
    let address = if v4 { Ipv4Addr::from_bits(bits as u32).to_string() } else { write_v6(rng, bits) };
    if prefix == max && rng.random_bool(0.5) { address } else { format!("{address}/{prefix}") }
}

/// `text` with a few random edits, in the characters the notation uses.
fn mutate(rng: &mut StdRng, text: &str) -> String {
    const ALPHABET: &[char] =
        &[':', '.', '/', '0', '1', '2', '5', '9', 'a', 'f', 'A', 'F', 'x', 'g', '%', '[', ']', ' ', '-', '+', '\t'];
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..3) {
            0 => chars.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ if at < chars.len() => chars[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
            _ => {}
        }
    }
    chars.into_iter().collect()
}

type CidrReading = (Option<String>, Option<i32>, Option<String>, Option<String>);

async fn read_all(connection: &mut PgConnection, texts: &[String]) -> Vec<CidrReading> {
    sqlx::query_as(
        "SELECT r.network, r.prefix, r.refusal, r.inet_network
         FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) CROSS JOIN LATERAL read_cidr(u.t) AS r
         ORDER BY u.i",
    )
    .bind(texts)
    .fetch_all(connection)
    .await
    .unwrap()
}

#[tokio::test]
async fn postgresql_reads_every_accepted_range_as_the_same_network() {
    let database = TestDatabase::create().await;
    let mut connection = PgConnection::connect(database.url()).await.unwrap();
    connection.execute(READ_CIDR).await.unwrap();

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut texts: Vec<String> = Vec::new();
    for _ in 0..CASES {
        texts.push(range_text(&mut rng, false));
        texts.push(range_text(&mut rng, true));
    }
    for i in 0..CASES {
        let mutant = mutate(&mut rng, &texts[i]);
        texts.push(mutant);
    }
    let readings = read_all(&mut connection, &texts).await;
    let _ = connection.close().await;
    database.drop_database().await;

    let mut failures = String::new();
    let (mut accepted, mut host_bits, mut mutants_accepted) = (0, 0, 0);
    for (index, (text, (network, prefix, refusal, inet_network))) in texts.iter().zip(&readings).enumerate() {
        match IpRange::parse(text) {
            Ok(range) => {
                accepted += 1;
                if index >= 2 * CASES {
                    mutants_accepted += 1;
                }
                match (network, prefix) {
                    (Some(network), Some(prefix)) if theirs(network, *prefix) == ours(range) => {}
                    (Some(network), Some(prefix)) => {
                        writeln!(failures, "{text:?}: latchkey reads {range}, PostgreSQL {network}/{prefix}").unwrap();
                    }
                    _ => {
                        writeln!(failures, "{text:?}: latchkey reads {range}, PostgreSQL refuses: {refusal:?}").unwrap()
                    }
                }
            }
            Err(IpRangeError::HostBitsSet { network: suggested }) => {
                host_bits += 1;
                let refused_for_bits = refusal.as_deref().is_some_and(|r| r.contains("bits set to right of mask"));
                let same_network = inet_network.as_deref().map(theirs_network) == Some(ours(suggested));
                if !refused_for_bits || !same_network {
                    writeln!(
                        failures,
                        "{text:?}: latchkey refuses for host bits (network {suggested}), PostgreSQL's cidr gives \
                         {network:?}/{prefix:?} {refusal:?} and its inet network {inet_network:?}"
                    )
                    .unwrap();
                }
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "latchkey and PostgreSQL disagree (seed {SEED:#x}):\n{failures}");
    // The comparison means something only if both kinds of case occurred.
    assert!(accepted >= CASES, "only {accepted} texts accepted");
    assert!(host_bits >= CASES, "only {host_bits} texts refused for host bits");
    assert!(mutants_accepted >= CASES / 20, "only {mutants_accepted} mutants accepted");
}

/// An address and a range of the same family as PostgreSQL sees it, the
/// address inside the range about half of the time.
fn membership_case(rng: &mut StdRng) -> (String, String) {
    // PostgreSQL's `<<=` is false between families, and it does not treat
    // `::ffff:a.b.c.d` as IPv4, while latchkey matches IPv4 and mapped
    // addresses as one (by design: a dual-stack socket reports IPv4 clients
    // in the mapped form). So only pairs PostgreSQL sees as one family are
    // compared: both IPv4, or both IPv6 text (mapped ones included, where
    // both readings agree).
    let range = range_text(rng, false);
    let ipv4_text = !range.contains(':');
    let (network, prefix) = ours(IpRange::parse(&range).unwrap());
    let bits = if rng.random_bool(0.5) {
        network | (rng.random::<u128>() & !mask(prefix))
    } else if ipv4_text {
        u128::from(rng.random::<u32>())
    } else {
        v6_bits(rng)
    };
    // An IPv6 address is printed by std, which writes mapped ones as
    // `::ffff:a.b.c.d`: IPv6 text to PostgreSQL.
    let address =
        if ipv4_text { Ipv4Addr::from_bits(bits as u32).to_string() } else { Ipv6Addr::from_bits(bits).to_string() };
    (address, range)
}

#[tokio::test]
async fn postgresql_agrees_on_membership_within_a_family() {
    let database = TestDatabase::create().await;
    let mut connection = PgConnection::connect(database.url()).await.unwrap();

    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let (addresses, ranges): (Vec<String>, Vec<String>) = (0..3 * CASES).map(|_| membership_case(&mut rng)).unzip();
    let answers: Vec<(bool,)> = sqlx::query_as(
        "SELECT u.a::inet <<= u.r::cidr FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(a, r, i) ORDER BY u.i",
    )
    .bind(&addresses)
    .bind(&ranges)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    database.drop_database().await;

    let mut failures = String::new();
    let mut inside = 0;
    for ((address, range), (theirs,)) in addresses.iter().zip(&ranges).zip(&answers) {
        let ours = IpRange::parse(range).unwrap().contains(address.parse().unwrap());
        inside += usize::from(ours);
        if ours != *theirs {
            writeln!(failures, "{address} in {range}: latchkey says {ours}, PostgreSQL {theirs}").unwrap();
        }
    }
    assert!(failures.is_empty(), "latchkey and PostgreSQL disagree (seed {:#x}):\n{failures}", SEED + 1);
    assert!(inside > CASES && inside < 2 * CASES, "{inside} of {} addresses inside: the cases are lopsided", 3 * CASES);
}
