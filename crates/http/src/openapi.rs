//! The OpenAPI 3.1 document, generated from the handlers and types
//! themselves, and the router built from the same declarations so that no
//! route can be missing from the document.

use axum::Json;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Services;
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
        (name = "system", description = "Liveness and readiness"),
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
pub(crate) fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::create_token, routes::list_tokens))
        .routes(routes!(routes::get_token, routes::update_token, routes::delete_token))
        .routes(routes!(routes::authorize))
        .routes(routes!(routes::connections))
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .routes(routes!(web::index))
        .routes(routes!(web::script))
        .routes(routes!(web::style))
        .routes(routes!(enforce::forward_auth))
        .routes(routes!(openapi_document))
}

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v3/openapi.json", tag = "system", responses((status = 200, description = "The document")))]
async fn openapi_document() -> Json<Document> {
    static DOCUMENT: std::sync::OnceLock<Document> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(openapi).clone())
}

/// The document, as served at `/v3/openapi.json`.
#[must_use]
pub fn openapi() -> Document {
    let (_, mut document) = router().split_for_parts();
    add_shared_responses(&mut document);
    add_links(&mut document);
    add_forward_auth_prefix(&mut document);
    document
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
    document.paths.add_path_operation(FORWARD_AUTH_PREFIX.documented, FORWARDED_METHODS.to_vec(), operation);
}

/// The wildcard route of [`add_forward_auth_prefix`].
pub(crate) fn forward_auth_prefix_route() -> axum::Router<Services> {
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
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
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
    for (name, operation_id) in
        [("GetToken", "get_token"), ("UpdateToken", "update_token"), ("DeleteToken", "delete_token")]
    {
        let link = LinkBuilder::new()
            .operation_id(operation_id)
            .parameter("token", "$response.body#/id")
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
