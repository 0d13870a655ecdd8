//! The canonical reading and the mapping, request by request: CARTO's
//! shapes map to their question; every ambiguity of SPEC §12 is refused.

use latchkey_domain::{Api, SourceType};

use super::mapping::{MappedSource, Route, Unmappable};
use super::request::{Ambiguity, BodyFormat, BodyPresence, BodyView, CanonicalRequest, DecidingHeaders, RequestHead};

const TOKEN: &str = "Bearer latchkey_tk_x";

/// A request: method, target, extra header copies, content type, body.
struct Case {
    method: &'static str,
    target: &'static str,
    authorization: Vec<&'static str>,
    content_type: Vec<&'static str>,
    referer: Vec<&'static str>,
    body: Option<&'static [u8]>,
}

fn get(target: &'static str) -> Case {
    Case { method: "GET", target, authorization: vec![TOKEN], content_type: vec![], referer: vec![], body: None }
}

fn post(target: &'static str, content_type: &'static str, body: &'static [u8]) -> Case {
    let content_type = if content_type.is_empty() { vec![] } else { vec![content_type] };
    Case { method: "POST", target, authorization: vec![TOKEN], content_type, referer: vec![], body: Some(body) }
}

fn read(case: &Case) -> Result<CanonicalRequest, Ambiguity> {
    let headers = DecidingHeaders {
        authorization: case.authorization.clone(),
        content_type: case.content_type.clone(),
        referer: case.referer.clone(),
        origin: vec![],
        method_override: false,
    };
    let presence = match case.body {
        Some(body) if !body.is_empty() => BodyPresence::Present,
        _ => BodyPresence::Absent,
    };
    RequestHead::parse(case.method, case.target, &headers, presence)?
        .with_body(BodyView::Read(case.body.unwrap_or(b"")))
}

fn map(case: &Case) -> Result<(Api, String, MappedSource), Unmappable> {
    let canonical = read(case)?;
    let mapped = Route::of(canonical.method(), &canonical.segments)?.map(&canonical)?;
    Ok((mapped.api, mapped.connection, mapped.source))
}

fn named(api: Api, connection: &str, source_type: SourceType, source: &str) -> (Api, String, MappedSource) {
    (api, connection.to_owned(), MappedSource::Named { source_type, source: source.to_owned() })
}

#[test]
fn carto_url_shapes() {
    let json = "application/json";
    let cases = vec![
        (
            get("/v3/sql/dw/query?q=SELECT%201&queryParameters=%7B%7D"),
            named(Api::Sql, "dw", SourceType::Query, "SELECT 1"),
        ),
        (
            post("/v3/sql/dw/query", json, br#"{"q": "SELECT 2", "queryParameters": {"a": 1}}"#),
            named(Api::Sql, "dw", SourceType::Query, "SELECT 2"),
        ),
        (
            post("/v3/sql/dw/job", json, br#"{"query": "SELECT 3"}"#),
            named(Api::Sql, "dw", SourceType::Query, "SELECT 3"),
        ),
        (get("/v3/maps/dw/table?name=p.d.t&format=tilejson"), named(Api::Maps, "dw", SourceType::Table, "p.d.t")),
        (get("/v3/maps/dw/tileset?name=p.d.tiles"), named(Api::Maps, "dw", SourceType::Tileset, "p.d.tiles")),
        (
            post("/v3/maps/dw/query", json, br#"{"q": "SELECT geom FROM t"}"#),
            named(Api::Maps, "dw", SourceType::Query, "SELECT geom FROM t"),
        ),
        (
            post(
                "/v3/imports",
                "application/json; charset=utf-8",
                br#"{"connection": "dw", "destination": "p.d.new", "url": "https://x/f.csv"}"#,
            ),
            named(Api::Imports, "dw", SourceType::Table, "p.d.new"),
        ),
        (get("/v3/lds/geocoding/geocode?address=x"), (Api::Lds, String::new(), MappedSource::None)),
        (get("/v3/maps/my%2Dconn/table?name=a.b%20c.d"), named(Api::Maps, "my-conn", SourceType::Table, "a.b c.d")),
        (get("/v3/maps/dw/table?na%6De=p.d.t"), named(Api::Maps, "dw", SourceType::Table, "p.d.t")),
        (
            post("/v3/sql/dw/query", "application/x-www-form-urlencoded", b"q=SELECT+1"),
            named(Api::Sql, "dw", SourceType::Query, "SELECT 1"),
        ),
        // A POST with its parameters in the URL and no body.
        (post("/v3/maps/dw/table?name=p.d.t", "", b""), named(Api::Maps, "dw", SourceType::Table, "p.d.t")),
    ];
    for (case, expected) in cases {
        assert_eq!(map(&case), Ok(expected), "{} {}", case.method, case.target);
    }
}

#[test]
fn every_ambiguity_is_refused() {
    use Ambiguity::*;
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let mut two_auth = get("/v3/maps/dw/table?name=p.d.t");
    two_auth.authorization.push("Bearer latchkey_tk_y");
    let mut two_types = post("/v3/sql/dw/query", json, br#"{"q": "SELECT 1"}"#);
    two_types.content_type.push(json);
    let mut two_referers = get("/v3/maps/dw/table?name=p.d.t");
    two_referers.referer = vec!["https://a.example/", "https://b.example/"];
    let mut get_with_body = get("/v3/maps/dw/table?name=p.d.t");
    get_with_body.body = Some(br#"{"name": "p.d.secret"}"#);
    get_with_body.content_type = vec![json];
    let cases: Vec<(Case, Ambiguity)> = vec![
        // Paths that routers normalise differently.
        (get("/v3/lds/%2e%2e/sql/bq/query?q=SELECT%20*%20FROM%20secret"), DotSegment),
        (get("/v3/lds/../sql/bq/query?q=x"), DotSegment),
        (get("/v3/lds/%2E%2e/sql/bq/query?q=x"), DotSegment),
        (get("/v3/lds/.%2E/sql/bq/query?q=x"), DotSegment),
        (get("/v3/lds/./x"), DotSegment),
        (get("/v3/lds/%2e/x"), DotSegment),
        (get("/v3//lds/x"), EmptySegment),
        (get("/v3/maps/dw/table/?name=p.d.t"), EmptySegment),
        (get("/v3/maps/dw/table;jsessionid=1?name=p.d.t"), PathCharacter),
        (get("/v3/maps/dw/table%3B?name=p.d.t"), PathCharacter),
        (get("/v3/lds/..%2fsql/bq/query?q=x"), PathCharacter),
        (get("/v3/lds/x%2Fy"), PathCharacter),
        (get("/v3/lds/x%5cy"), PathCharacter),
        (get("/v3/lds\\..\\sql/bq/query"), PathCharacter),
        (get("/v3/lds/x%00"), PathCharacter),
        (get("/v3/lds/x%0a"), PathCharacter),
        (get("/v3/lds/%zz"), BadPercentEncoding),
        (get("/v3/lds/%2"), BadPercentEncoding),
        (get("/v3/lds/%ff"), InvalidUtf8),
        (get("v3/lds/x"), NotAPath),
        (get("http://evil.example/v3/lds/x"), NotAPath),
        (get("/v3/lds/x#/../../sql/bq/query?q=x"), Fragment),
        (get("/v3/maps/dw/table?name=p.d.t#x"), Fragment),
        (get("/v3/maps/dw/table?name=p.d.t&_method=DELETE"), MethodOverride),
        (post("/v3/maps/dw/table", form, b"name=p.d.t&_method=GET"), MethodOverride),
        // Parameters read twice, or spelt like one.
        (get("/v3/maps/dw/table?name=p.d.t&name=p.d.secret"), RepeatedParameter("name")),
        (get("/v3/maps/dw/table?name=p.d.t&NAME=p.d.secret"), LookalikeParameter("name")),
        (get("/v3/maps/dw/table?Name=p.d.t"), LookalikeParameter("name")),
        (get("/v3/maps/dw/table?name=p.d.t&name[]=p.d.secret"), LookalikeParameter("name")),
        (get("/v3/maps/dw/table?name[0]=p.d.t"), LookalikeParameter("name")),
        (get("/v3/lds/x?access.token=latchkey_tk_y"), LookalikeParameter("access_token")),
        (get("/v3/lds/x?access+token=latchkey_tk_y"), LookalikeParameter("access_token")),
        (get("/v3/sql/dw/query?q=SELECT+1;name=x"), QuerySemicolon),
        (get("/v3/sql/dw/query?q=%zz"), BadPercentEncoding),
        (get("/v3/sql/dw/query?q=%C0%AF"), InvalidUtf8),
        (get("/v3/maps/dw/table?name%00=p.d.secret&name=p.d.t"), ControlCharacter),
        (post("/v3/sql/dw/query?q=SELECT%201", json, br#"{"q": "SELECT * FROM secret"}"#), RepeatedParameter("q")),
        (post("/v3/maps/dw/table?name=p.d.t", form, b"name=p.d.secret"), RepeatedParameter("name")),
        (post("/v3/maps/dw/table", form, b"name=p.d.t&name=p.d.secret"), RepeatedParameter("name")),
        (
            post("/v3/imports", json, br#"{"connection": "dw", "destination": "p.d.t", "Destination": "p.d.x"}"#),
            LookalikeParameter("destination"),
        ),
        // Bodies and their types.
        (get_with_body, BodyOnBodylessMethod),
        (post("/v3/sql/dw/query", "", br#"{"q": "SELECT 1"}"#), MissingContentType),
        (post("/v3/sql/dw/query", "text/plain", br#"{"q": "SELECT 1"}"#), UnsupportedContentType),
        (post("/v3/sql/dw/query", "application/json; charset=utf-16", br#"{"q": "SELECT 1"}"#), UnsupportedContentType),
        (post("/v3/sql/dw/query", "application/json, text/plain", br#"{"q": "SELECT 1"}"#), UnsupportedContentType),
        (post("/v3/sql/dw/query", "multipart/form-data; boundary=x", b"--x--"), UnsupportedContentType),
        (two_types, RepeatedHeader("Content-Type")),
        (post("/v3/sql/dw/query", json, b"\xef\xbb\xbf{\"q\": \"SELECT 1\"}"), ByteOrderMark),
        (post("/v3/sql/dw/query", json, br#"{"q": "SELECT 1", "q": "SELECT * FROM secret"}"#), DuplicateJsonKey),
        (post("/v3/sql/dw/query", json, br#"{"q": "SELECT 1", "x": {"a": 1, "a": 2}}"#), DuplicateJsonKey),
        (post("/v3/sql/dw/query", json, br#"{"q": "SELECT 1"} {"q": "SELECT 2"}"#), InvalidJson),
        (post("/v3/sql/dw/query", json, br#"{"q": "SELECT 1""#), InvalidJson),
        (post("/v3/sql/dw/query", json, br#"[{"q": "SELECT 1"}]"#), JsonNotAnObject),
        (post("/v3/sql/dw/query", json, br#""SELECT 1""#), JsonNotAnObject),
        (post("/v3/sql/dw/query", json, br#"{"q": ["SELECT 1"]}"#), NotAString("q")),
        (post("/v3/sql/dw/query", json, br#"{"q": null}"#), NotAString("q")),
        (post("/v3/sql/dw/query", form, b"q=%ff"), InvalidUtf8),
        // Headers and tokens.
        (two_auth, RepeatedHeader("Authorization")),
        (two_referers, RepeatedHeader("Referer")),
        (get("/v3/maps/dw/table?name=p.d.t&access_token=latchkey_tk_y"), TwoTokens),
        (post("/v3/maps/dw/table", form, b"name=p.d.t&access_token=latchkey_tk_y"), TwoTokens),
    ];
    for (case, ambiguity) in cases {
        assert_eq!(read(&case).err(), Some(ambiguity.clone()), "{} {}", case.method, case.target);
        assert_eq!(map(&case).err(), Some(Unmappable::Ambiguous(ambiguity)), "{} {}", case.method, case.target);
    }
}

#[test]
fn a_job_naming_its_query_twice_is_ambiguous() {
    let case = post("/v3/sql/dw/job", "application/json", br#"{"query": "SELECT 1", "q": "SELECT 2"}"#);
    assert_eq!(map(&case), Err(Unmappable::Ambiguous(Ambiguity::RepeatedParameter("query"))));
}

#[test]
fn unknown_shapes_and_missing_parameters() {
    for (method, target) in [
        ("GET", "/v3/tokens"),
        ("GET", "/v3/sql/dw/other?q=x"),
        ("DELETE", "/v3/sql/dw/query?q=x"),
        ("GET", "/v3/sql/dw/job?q=x"),
        ("GET", "/v3/imports"),
        ("GET", "/v2/sql/dw/query?q=x"),
        ("GET", "/"),
        ("GET", "/v3/lds"),
        ("GET", "/V3/SQL/dw/query?q=x"),
        ("get", "/v3/sql/dw/query?q=x"),
        ("Post", "/v3/sql/dw/query?q=x"),
        ("GET", "/v3/maps/dw/table/extra?name=x"),
    ] {
        let mut case = get(target);
        case.method = method;
        assert_eq!(map(&case), Err(Unmappable::UnknownRequest), "{method} {target}");
    }
    assert_eq!(map(&get("/v3/maps/dw/table?format=json")), Err(Unmappable::MissingParameter("name")));
    let imports = post("/v3/imports", "application/json", br#"{"destination": "p.d.t"}"#);
    assert_eq!(map(&imports), Err(Unmappable::MissingParameter("connection")));
}

#[test]
fn a_body_that_was_not_seen_hides_the_source_whatever_the_url_says() {
    let headers = DecidingHeaders { authorization: vec![TOKEN], ..DecidingHeaders::default() };
    for (target, api) in [("/v3/sql/dw/query?q=SELECT%201", Api::Sql), ("/v3/maps/dw/table?name=p.d.t", Api::Maps)] {
        let head = RequestHead::parse("POST", target, &headers, BodyPresence::Unknown).unwrap();
        let canonical = head.with_body(BodyView::Unseen).unwrap();
        let mapped = Route::of("POST", &canonical.segments).unwrap().map(&canonical).unwrap();
        assert_eq!((mapped.api, mapped.source), (api, MappedSource::Unseen), "{target}");
    }
    // Without a body (the proxy said so), the source is in the URL.
    for method in ["GET", "POST"] {
        let head = RequestHead::parse(method, "/v3/maps/dw/table?name=p.d.t", &headers, BodyPresence::Absent).unwrap();
        let canonical = head.with_body(BodyView::Unseen).unwrap();
        let mapped = Route::of(method, &canonical.segments).unwrap().map(&canonical).unwrap();
        assert_eq!(mapped.source, MappedSource::Named { source_type: SourceType::Table, source: "p.d.t".into() });
    }
    // A GET whose proxy cannot say whether it has a body may carry its
    // source there.
    let head = RequestHead::parse("GET", "/v3/maps/dw/table?name=p.d.t", &headers, BodyPresence::Unknown).unwrap();
    let canonical = head.with_body(BodyView::Unseen).unwrap();
    let mapped = Route::of("GET", &canonical.segments).unwrap().map(&canonical).unwrap();
    assert_eq!(mapped.source, MappedSource::Unseen);
    // An import's connection is in its body too.
    let head = RequestHead::parse("POST", "/v3/imports", &headers, BodyPresence::Unknown).unwrap();
    let canonical = head.with_body(BodyView::Unseen).unwrap();
    let mapped = Route::of("POST", &canonical.segments).unwrap().map(&canonical).unwrap();
    assert_eq!((mapped.connection.as_str(), mapped.source), ("", MappedSource::Unseen));
}

#[test]
fn the_forwarded_request_is_rebuilt_from_what_was_read() {
    let mut case =
        get("/v3/maps/my%2Dconn/table?name=a.b%20c.d&access_token=latchkey_tk_x&format=tile+json&x=%26%3D%3B");
    case.authorization = vec![];
    let canonical = read(&case).unwrap();
    assert_eq!(canonical.path(), "/v3/maps/my-conn/table");
    assert_eq!(canonical.query().as_deref(), Some("name=a.b+c.d&format=tile+json&x=%26%3D%3B"));
    assert_eq!(canonical.token(), Some("latchkey_tk_x"));
    // Re-read, the rebuilt request is the same request.
    let rebuilt = format!("{}?{}", canonical.path(), canonical.query().unwrap());
    let again = RequestHead::parse("GET", &rebuilt, &DecidingHeaders::default(), BodyPresence::Absent).unwrap();
    let again = again.with_body(BodyView::Read(b"")).unwrap();
    assert_eq!(
        (again.segments.clone(), again.query.clone()),
        (
            canonical.segments.clone(),
            canonical.query.clone()[..].iter().filter(|(name, _)| name != "access_token").cloned().collect::<Vec<_>>()
        )
    );

    let json = br#"{"q": "SELECT 1",  "queryParameters": {"n": 12345678901234567890123}}"#;
    let canonical = read(&post("/v3/sql/dw/query", "application/json", json)).unwrap();
    assert_eq!(
        canonical.body(),
        Some((BodyFormat::Json, json.to_vec())),
        "JSON goes as received: numbers keep their digits"
    );
    let canonical =
        read(&post("/v3/sql/dw/query", "application/x-www-form-urlencoded", b"q=SELECT%201&x=a+b")).unwrap();
    assert_eq!(canonical.body(), Some((BodyFormat::Form, b"q=SELECT+1&x=a+b".to_vec())));
    let segments = vec!["v3".to_owned(), "lds".to_owned(), "a b?c#d".to_owned()];
    let canonical = CanonicalRequest { segments, ..canonical };
    assert_eq!(canonical.path(), "/v3/lds/a%20b%3Fc%23d");
}
