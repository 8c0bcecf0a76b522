//! The HTTP API as an OpenAPI 3.1 document (`/openapi.json`), built with `utoipa` from the
//! route table: each route's role, and the schemas of the request and reply types its
//! handler reads and writes. The table builds the router too, so the document cannot leave
//! out a route the router serves.

use axum::http::Method;
use utoipa::openapi::path::{
    Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::error::{ErrorBody, OllamaErrorBody};

/// A type's schema, added with the schemas it refers to, and the reference to it.
pub type SchemaOf = fn(&mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema>;

/// What the API document says of a route, from the types its handler reads and writes.
#[derive(Clone)]
pub struct Doc {
    pub summary: &'static str,
    /// The JSON body, and whether it must be there.
    pub body: Option<SchemaOf>,
    pub body_required: bool,
    /// The query string's parameters.
    pub query: Option<fn() -> Vec<Parameter>>,
    /// The success status and its body: JSON of a type, or another media type.
    pub status: u16,
    pub reply: Reply,
    /// The media type of the streamed reply (`"stream": true`), with what its items are.
    pub stream: Option<(&'static str, SchemaOf)>,
}

#[derive(Clone, Copy)]
pub enum Reply {
    Json(SchemaOf),
    /// A JSON object whose shape the handler builds (no Rust type describes it yet).
    Object(&'static str),
    /// Another media type, e.g. `text/plain` or `text/event-stream`.
    Media(&'static str, &'static str),
    /// An empty body.
    Empty,
}

pub fn schema_of<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    schema_named::<T>(&T::name(), schemas)
}

/// As [`schema_of`], under `name`: for a generic type, whose instances would share one.
pub fn schema_named<T: ToSchema>(
    name: &str,
    schemas: &mut Vec<(String, RefOr<Schema>)>,
) -> RefOr<Schema> {
    schemas.push((name.to_string(), T::schema()));
    T::schemas(schemas);
    RefOr::Ref(Ref::from_schema_name(name))
}

impl Default for Doc {
    fn default() -> Self {
        Self {
            summary: "",
            body: None,
            body_required: false,
            query: None,
            status: 200,
            reply: Reply::Empty,
            stream: None,
        }
    }
}

/// The document for `routes`: each one's method, path (axum's syntax), the role it needs
/// (`None`: anyone) and what it reads and writes.
pub fn document<'a>(
    routes: impl Iterator<Item = (&'a Method, &'a str, Option<Role>, &'a Doc)>,
) -> OpenApi {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let openai_error = schema_of::<ErrorBody>(&mut schemas);
    let ollama_error = schema_of::<OllamaErrorBody>(&mut schemas);
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for (method, path, access, doc) in routes {
        let error = if path.starts_with("/api/") {
            &ollama_error
        } else {
            &openai_error
        };
        let operation = operation(method, path, access, doc, &mut schemas, error);
        let method = match method.as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            other => unreachable!("the table has no {other} routes"),
        };
        let path = openapi_path(path);
        // Methods on one path share its item.
        match items.iter_mut().find(|(p, _)| *p == path) {
            Some((_, item)) => item.merge_operations(PathItem::new(method, operation)),
            None => items.push((path, PathItem::new(method, operation))),
        }
    }
    let paths = items
        .into_iter()
        .fold(PathsBuilder::new(), |paths, (path, item)| {
            paths.path(path, item)
        });
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `symphony keys create`, or a JWT (HS256, or signed \
                         by the identity provider the server trusts)",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Symphony")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "OpenAI- and Ollama-compatible inference, document collections and agent \
                     runs, served by `symphony serve`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// Axum's `{*model}` (the rest of the path) is OpenAPI's `{model}`.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The names of a path's parameters.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')?
            .strip_suffix('}')
            .map(|name| name.trim_start_matches('*'))
    })
}

fn operation(
    method: &Method,
    path: &str,
    access: Option<Role>,
    doc: &Doc,
    schemas: &mut Vec<(String, RefOr<Schema>)>,
    error: &RefOr<Schema>,
) -> Operation {
    let mut op = OperationBuilder::new()
        .summary(Some(doc.summary))
        .operation_id(Some(operation_id(method, path)))
        .tag(tag(path));
    for name in path_parameters(path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if let Some(query) = doc.query {
        op = op.parameters(Some(query()));
    }
    if let Some(body) = doc.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body(schemas))).build(),
                )
                .required(Some(if doc.body_required {
                    Required::True
                } else {
                    Required::False
                }))
                .build(),
        ));
    }
    let mut success = ResponseBuilder::new().description(match (doc.status, doc.stream) {
        (101, _) => "Switching to the WebSocket protocol".to_string(),
        (201, _) => "Created".to_string(),
        (202, _) => "Accepted".to_string(),
        (_, Some((media, _))) => format!(
            "OK. With `stream` the reply is `{media}`, each event (line) holding one of the \
             schema given for that media type"
        ),
        _ => "OK".to_string(),
    });
    match doc.reply {
        Reply::Json(schema) => {
            success = success.content(
                "application/json",
                ContentBuilder::new().schema(Some(schema(schemas))).build(),
            );
        }
        Reply::Object(what) => {
            success = success.content("application/json", described(Type::Object, what));
        }
        Reply::Media(media, what) => {
            success = success.content(media, described(Type::String, what));
        }
        Reply::Empty => {}
    }
    if let Some((media, item)) = doc.stream {
        // OpenAPI 3.1 has no schema for a stream's items: the schema given is each item's.
        success = success.content(
            media,
            ContentBuilder::new().schema(Some(item(schemas))).build(),
        );
    }
    op = op.response(doc.status.to_string(), success.build());
    let mut errors: Vec<(u16, &str)> = Vec::new();
    if doc.body.is_some() || doc.query.is_some() || *method == Method::POST {
        errors.push((400, "The request is malformed or a field is invalid"));
    }
    if let Some(role) = access {
        op = op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::new("api_key", Vec::<String>::new()))
            .description(Some(format!("Needs the `{}` role.", role.as_str())));
        errors.push((401, "No credentials, or ones the server does not accept"));
        errors.push((403, "The credentials' role may not call this route"));
    }
    if path_parameters(path).next().is_some() || doc.body.is_some() {
        errors.push((404, "What the path or the body names does not exist"));
    }
    if doc.body.is_some() {
        errors.push((413, "The body is larger than the server accepts"));
    }
    if access == Some(Role::User) {
        errors.push((
            429,
            "A rate limit or quota is spent; `retry-after` says when to retry",
        ));
        errors.push((
            503,
            "The model's queue is full; `retry-after` says when to retry",
        ));
    }
    for (status, description) in errors {
        op = op.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(error.clone())).build(),
                )
                .build(),
        );
    }
    op.build()
}

/// A body of `kind` that only a sentence describes.
fn described(kind: Type, what: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(kind)
                .description(Some(what)),
        ))
        .build()
}

fn operation_id(method: &Method, path: &str) -> String {
    let path: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!(
        "{}{}",
        method.as_str().to_lowercase(),
        path.trim_end_matches('_')
    )
}

fn tag(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/api/") => "Ollama",
        p if p.starts_with("/v1/collections") => "Collections",
        p if p.starts_with("/v1/agents") => "Agents",
        p if p.starts_with("/v1/admin") => "Admin",
        p if p.starts_with("/v1/") => "OpenAI",
        "/tokenize" | "/detokenize" | "/tokenizer_info" => "Tokenizer",
        _ => "Server",
    }
}
