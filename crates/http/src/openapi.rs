//! The OpenAPI 3.1 document, generated from the handlers and types
//! themselves, and the router built from the same declarations so that no
//! route can be missing from the document.

use axum::Json;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Shared;
use crate::{enforce, routes, web};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "Issue, manage and enforce API access tokens for data APIs.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "tokens", description = "The caller's API access tokens"),
        (name = "authorize", description = "The decision data services ask for"),
        (name = "connections", description = "Connections to data warehouses"),
        (name = "org", description = "The org's audit log, and for org admins its tokens and token policy"),
        (name = "system", description = "Liveness and readiness"),
        (name = "monitoring", description = "Prometheus metrics, for the monitoring system rather than API clients"),
        (name = "web page", description = "The Credentials page, a client of this API"),
        (name = "enforcement", description = "Decisions for reverse proxies in front of data APIs"),
    )
)]
struct ApiDoc;

/// Adds the bearer security scheme the management endpoints name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description =
            Some("A user key (`latchkey_uk_…`) or, when configured, an identity provider's JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every documented route, with its handler.
pub(crate) fn router() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::create_token, routes::list_tokens))
        .routes(routes!(routes::get_token, routes::update_token, routes::delete_token))
        .routes(routes!(routes::roll_token))
        .routes(routes!(routes::authorize))
        .routes(routes!(routes::connections))
        .routes(routes!(routes::list_org_tokens))
        .routes(routes!(routes::revoke_org_token))
        .routes(routes!(routes::audit))
        .routes(routes!(routes::get_policy, routes::put_policy))
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .routes(routes!(web::index))
        .routes(routes!(web::script))
        .routes(routes!(web::style))
        .routes(routes!(web::icon))
        .routes(routes!(web::legacy_icon))
        .routes(routes!(enforce::forward_auth))
        .routes(routes!(openapi_document))
}

/// Which operations the served document describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Include {
    /// What clients call: tokens, authorize, connections, the org's audit
    /// log, tokens and policy, system. What a client generator should read.
    #[default]
    Client,
    /// Also the web page's files, forward-auth (called by proxies) and the
    /// metrics (read by Prometheus).
    All,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DocumentQuery {
    /// `client` (the default): the operations clients call; `all`: also
    /// the web page, forward-auth and the metrics.
    #[serde(default)]
    #[param(inline)]
    include: Include,
}

/// The tags whose operations are not for API clients.
const NOT_FOR_CLIENTS: [&str; 3] = ["web page", "enforcement", "monitoring"];

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/v3/openapi.json", tag = "system",
    params(DocumentQuery),
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
async fn openapi_document(axum::extract::Query(query): axum::extract::Query<DocumentQuery>) -> Json<serde_json::Value> {
    static CLIENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    static ALL: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let document = match query.include {
        Include::Client => CLIENT.get_or_init(|| served(Include::Client)),
        Include::All => ALL.get_or_init(|| served(Include::All)),
    };
    Json(document.clone())
}

/// The whole document: every route the router serves.
#[must_use]
pub fn openapi() -> Document {
    let (_, mut document) = router().split_for_parts();
    add_shared_responses(&mut document);
    add_links(&mut document);
    add_forward_auth_prefix(&mut document);
    unique_operation_ids(&mut document);
    document.servers = Some(vec![
        utoipa::openapi::ServerBuilder::new()
            .url("/")
            .description(Some("This server: the document's own origin"))
            .build(),
    ]);
    document
}

/// The document as served: [`openapi`] with what utoipa's types cannot
/// say added as JSON Schema, and, for `include`, only the client surface.
#[must_use]
pub fn served(include: Include) -> serde_json::Value {
    let mut document = serde_json::to_value(openapi()).unwrap_or_default();
    state_what_the_types_cannot(&mut document);
    if include == Include::Client {
        let paths = document["paths"].as_object_mut().map(std::mem::take).unwrap_or_default();
        let kept = paths.into_iter().filter(|(_, item)| {
            let tags = item
                .as_object()
                .into_iter()
                .flat_map(|ops| ops.values())
                .flat_map(|op| op["tags"].as_array().cloned().unwrap_or_default());
            !tags.into_iter().all(|tag| tag.as_str().is_some_and(|t| NOT_FOR_CLIENTS.contains(&t)))
        });
        document["paths"] = serde_json::Value::Object(kept.collect());
        if let Some(tags) = document["tags"].as_array_mut() {
            tags.retain(|tag| !tag["name"].as_str().is_some_and(|t| NOT_FOR_CLIENTS.contains(&t)));
        }
    }
    document
}

/// Rules of the request bodies that utoipa's attributes cannot express, as
/// JSON Schema: so that generated clients and schema-driven testers know
/// them instead of learning them from 400s.
fn state_what_the_types_cannot(document: &mut serde_json::Value) {
    // A header is there or not; it cannot be null (utoipa makes every
    // optional parameter outside the query nullable).
    let parameters = document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("parameters").and_then(serde_json::Value::as_array_mut))
        .flatten();
    for parameter in parameters.filter(|p| p["in"] == "header") {
        if let Some(types) = parameter["schema"]["type"].as_array_mut() {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                parameter["schema"]["type"] = only.clone();
            }
        }
    }
    let schemas = &mut document["components"]["schemas"];
    // Every API but `lds` names its source (SPEC §7).
    if let Some(authorize) = schemas.get_mut("AuthorizeRequest").and_then(serde_json::Value::as_object_mut) {
        let sourced: Vec<&str> = latchkey_domain::Api::ALL
            .into_iter()
            .filter(|api| *api != latchkey_domain::Api::Lds)
            .map(latchkey_domain::Api::as_str)
            .collect();
        authorize
            .insert("if".into(), serde_json::json!({"properties": {"api": {"enum": sourced}}, "required": ["api"]}));
        // Present and not null.
        let text = serde_json::json!({"type": "string"});
        authorize.insert(
            "then".into(),
            serde_json::json!({
                "required": ["connection_name", "source_type", "source"],
                "properties": {"connection_name": text, "source_type": text, "source": text},
            }),
        );
    }
    // The expiration is set at creation only: naming it in a change is
    // refused with `expiration_immutable`.
    if let Some(update) = schemas.get_mut("UpdateTokenRequest").and_then(serde_json::Value::as_object_mut) {
        update.insert("not".into(), serde_json::json!({"required": ["expiration_date"]}));
    }
}

/// Makes every `operationId` unique, as generators need: an operation that
/// shares its id with others (one handler on several methods) gets its
/// method appended (`forward_auth_get`).
fn unique_operation_ids(document: &mut Document) {
    use std::collections::HashMap;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            if let Some(id) = &operation.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in document.paths.paths.values_mut() {
        for (method, operation) in methods(item) {
            if let Some(id) = &operation.operation_id
                && uses.get(id).copied().unwrap_or(0) > 1
            {
                operation.operation_id = Some(format!("{id}_{method}"));
            }
        }
    }
}

/// The methods forward-auth answers: whatever the original request used.
const FORWARDED_METHODS: [utoipa::openapi::HttpMethod; 6] = [
    utoipa::openapi::HttpMethod::Get,
    utoipa::openapi::HttpMethod::Post,
    utoipa::openapi::HttpMethod::Put,
    utoipa::openapi::HttpMethod::Patch,
    utoipa::openapi::HttpMethod::Delete,
    utoipa::openapi::HttpMethod::Options,
];

/// The one route utoipa cannot declare from a handler: a wildcard path.
/// Envoy's `ext_authz` (with `path_prefix`) sends the original path after
/// the prefix and the original method, rather than headers: the same check.
/// The router and the document both read it here.
struct WildcardRoute {
    /// The path as axum matches it.
    routed: &'static str,
    /// The path as the document shows it.
    documented: &'static str,
}

const FORWARD_AUTH_PREFIX: WildcardRoute =
    WildcardRoute { routed: "/v3/forward-auth/{*path}", documented: "/v3/forward-auth/{path}" };

fn add_forward_auth_prefix(document: &mut Document) {
    use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
    let operation = OperationBuilder::new()
        .tag("enforcement")
        .summary(Some("Forward-auth with the original path in the URL (Envoy ext_authz path_prefix)"))
        .parameter(
            ParameterBuilder::new()
                .name("path")
                .parameter_in(ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some("The original request's path, after /v3/forward-auth/"))
                .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))),
        )
        .response("200", utoipa::openapi::ResponseBuilder::new().description("The original request may proceed"))
        .response("401", utoipa::openapi::ResponseBuilder::new().description("No usable token (X-Latchkey-Reason)"))
        .response(
            "400",
            utoipa::openapi::ResponseBuilder::new()
                .description("Not the configured header set (--forward-auth-headers envoy expects this route)"),
        )
        .response("403", utoipa::openapi::ResponseBuilder::new().description("Refused (X-Latchkey-Reason)"))
        .response(
            "404",
            utoipa::openapi::ResponseBuilder::new()
                .description("Forward-auth is off (no --org and --forward-auth-headers)"),
        )
        .response("503", utoipa::openapi::ResponseBuilder::new().description("Storage unavailable: refuse"))
        .build();
    for method in FORWARDED_METHODS {
        let mut operation = operation.clone();
        operation.operation_id = Some(format!("forward_auth_path_{}", method_name(&method)));
        document.paths.add_path_operation(FORWARD_AUTH_PREFIX.documented, vec![method], operation);
    }
}

/// The wildcard route of [`add_forward_auth_prefix`].
pub(crate) fn forward_auth_prefix_route() -> axum::Router<Shared> {
    use axum::routing::{MethodFilter, on};
    use utoipa::openapi::HttpMethod;
    let filter = |method: &HttpMethod| match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Trace => MethodFilter::TRACE,
    };
    let methods = FORWARDED_METHODS.iter().map(filter).reduce(MethodFilter::or).unwrap_or(MethodFilter::GET);
    axum::Router::new().route(FORWARD_AUTH_PREFIX.routed, on(methods, enforce::forward_auth))
}

/// The answers every operation of a kind can give, written once here
/// rather than on each handler: a bearer-protected operation can be refused
/// its credential (401), limited after failed authentications (429) and
/// find storage down (503); an operation with a JSON body can get a body
/// too large (413) or not JSON (415). A handler's own description of one of
/// these statuses wins.
fn add_shared_responses(document: &mut Document) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, KnownFormat, ObjectBuilder, Ref, RefOr, ResponseBuilder, SchemaFormat, Type,
    };
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
    };
    let built = |builder: utoipa::openapi::ResponseBuilder| RefOr::T(builder.build());
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    let retry_after = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0)),
        ))
        .description(Some("Seconds to wait"))
        .build();
    let shared_bearer = [
        ("401", built(error("No valid bearer credential"))),
        (
            "429",
            built(
                error("Too many failed authentications from this address (`rate_limited`); see Retry-After")
                    .header("Retry-After", retry_after),
            ),
        ),
        ("503", built(error("Storage unavailable"))),
    ];
    let shared_body = [("413", built(error("Body too large"))), ("415", built(error("Not JSON")))];
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            let guarded = operation.security.as_ref().is_some_and(|all| all.contains(&bearer));
            let shared = guarded
                .then_some(shared_bearer.iter())
                .into_iter()
                .flatten()
                .chain(operation.request_body.is_some().then_some(shared_body.iter()).into_iter().flatten());
            for (status, response) in shared {
                operation.responses.responses.entry((*status).to_owned()).or_insert_with(|| response.clone());
            }
        }
    }
}

/// Every operation of one path.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    methods(item).map(|(_, operation)| operation)
}

/// Every operation of one path, with its method's name.
fn methods(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(name, operation)| operation.as_mut().map(|operation| (name, operation)))
}

fn method_name(method: &utoipa::openapi::HttpMethod) -> &'static str {
    use utoipa::openapi::HttpMethod;
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Patch => "patch",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Trace => "trace",
    }
}

/// Links from a created token to what can be done with it, so that clients
/// (and stateful API testers) can follow them: read, change and delete it
/// by id, and authorize with its value.
fn add_links(document: &mut Document) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    let Some(RefOr::T(created)) = document
        .paths
        .paths
        .get_mut("/v3/tokens")
        .and_then(|item| item.post.as_mut())
        .and_then(|operation| operation.responses.responses.get_mut("201"))
    else {
        return;
    };
    for (name, operation_id, parameter) in [
        ("GetToken", "get_token", "token"),
        ("UpdateToken", "update_token", "token"),
        ("DeleteToken", "delete_token", "token"),
        ("RollToken", "roll_token", "token"),
        ("AuditOfToken", "audit", "token"),
        ("RevokeToken", "revoke_org_token", "id"),
    ] {
        let link = LinkBuilder::new()
            .operation_id(operation_id)
            .parameter(parameter, "$response.body#/id")
            .description(format!("The created token, by id ({operation_id})"))
            .build();
        created.links.insert(name.to_owned(), RefOr::T(link));
    }
    let authorize = LinkBuilder::new()
        .operation_id("authorize")
        .request_body(Some(serde_json::json!({"token": "$response.body#/token", "api": "lds"})))
        .description("Authorize a request with the created token's value")
        .build();
    created.links.insert("Authorize".to_owned(), RefOr::T(authorize));
}
