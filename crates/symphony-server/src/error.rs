//! Errors as clients expect them: OpenAI's `{"error": {message, type, param, code}}` on the
//! `/v1` routes, Ollama's `{"error": "..."}` on the `/api` routes, each with the status code
//! its API uses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{AuthError, KeyFileError};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::bad_request(message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self {
            param: Some("model"),
            ..Self::not_found(format!(
                "the model '{model}' does not exist: `symphony models list` shows the \
                 models in the store, `symphony models fetch` or `symphony pull` adds one"
            ))
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 429 without Retry-After: a quota never resets, so no wait would help.
    pub fn quota_spent(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// OpenAI's error `type` for the status.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "invalid_request_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self.status {
            StatusCode::NOT_FOUND if self.param == Some("model") => Some("model_not_found"),
            StatusCode::UNAUTHORIZED => Some("invalid_api_key"),
            StatusCode::TOO_MANY_REQUESTS => Some("rate_limit_exceeded"),
            StatusCode::PAYLOAD_TOO_LARGE => Some("request_too_large"),
            _ => None,
        }
    }

    fn with_headers(&self, mut response: Response) -> Response {
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    /// The same error in Ollama's shape.
    pub fn ollama(self) -> OllamaError {
        OllamaError(self)
    }
}

/// The body of an error on the `/v1` routes, as OpenAI writes it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, ...
    #[serde(rename = "type")]
    kind: &'static str,
    /// The request field at fault.
    param: Option<&'static str>,
    code: Option<&'static str>,
}

/// The body of an error on the `/api` routes, as Ollama writes it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = ollama::ErrorBody)]
pub struct OllamaErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind(),
                param: self.param,
                code: self.code(),
                message: self.message.clone(),
            },
        };
        self.with_headers((self.status, Json(body)).into_response())
    }
}

// The one map from the layers' typed errors to HTTP: handlers and the layers under them
// return their own errors and `?` turns them into a status here, so a status is decided in
// one place rather than in each handler.

impl From<symphony_engine::Error> for ApiError {
    fn from(e: symphony_engine::Error) -> Self {
        use symphony_engine::Error as E;
        match e {
            E::InvalidRequest(_) => ApiError::bad_request(e.to_string()),
            E::Model(e) => e.into(),
            E::Overloaded(e) => e.into(),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<symphony_models::Error> for ApiError {
    fn from(e: symphony_models::Error) -> Self {
        use symphony_models::Error as E;
        match &e {
            E::ContextLength { .. } => ApiError::invalid_param("messages", e.to_string()),
            E::NoChatTemplate => ApiError::bad_request(format!(
                "{e}: use /v1/completions (or Ollama's raw mode) for this model"
            )),
            // The template refused the conversation (`raise_exception`) or ran past its
            // bounds on it: the request cannot be rendered as sent.
            E::ChatTemplate(_) => ApiError::invalid_param("messages", e.to_string()),
            E::TokenOutOfRange { .. } => ApiError::invalid_param("prompt", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// 503: no room now. Retry-After in whole seconds, rounded up (a client told 0 would retry
/// at once), and none when waiting does not help.
impl From<symphony_engine::Overloaded> for ApiError {
    fn from(e: symphony_engine::Overloaded) -> Self {
        let seconds = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Self {
            retry_after: e.retry_after.map(seconds),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, e.message)
        }
    }
}

impl From<symphony_store::Error> for ApiError {
    fn from(e: symphony_store::Error) -> Self {
        use symphony_store::Error as E;
        match &e {
            E::NotFound { name, .. } => ApiError::model_not_found(name),
            E::InvalidName { .. } => ApiError::invalid_param("model", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<symphony_rag::Error> for ApiError {
    fn from(e: symphony_rag::Error) -> Self {
        use symphony_rag::Error as E;
        match e {
            E::NotFound { name, .. } => ApiError::not_found(format!(
                "no collection '{name}' (create it with POST /v1/collections)"
            )),
            E::Exists(name) => ApiError::new(
                StatusCode::CONFLICT,
                format!("collection '{name}' exists already"),
            ),
            e @ (E::InvalidName(_)
            | E::Chunking(_)
            | E::InvalidQuery(_)
            | E::Extract { .. }
            | E::EmbedderMismatch { .. }
            | E::Dimension { .. }) => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            // Not the caller's fault: try again once the provider answers.
            AuthError::KeysUnavailable(_) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            },
            _ => ApiError::unauthorized(e.to_string()),
        }
    }
}

impl From<KeyFileError> for ApiError {
    fn from(e: KeyFileError) -> Self {
        match e {
            KeyFileError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            KeyFileError::Missing(_) => ApiError::not_found(e.to_string()),
            KeyFileError::BadName(_) => ApiError::invalid_param("name", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// A file the server itself reads or writes failed: its fault, not the request's.
impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("a blocking task stopped: {e}"))
    }
}

/// An [`ApiError`] answered in Ollama's shape.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = OllamaErrorBody {
            error: e.message.clone(),
        };
        e.with_headers((e.status, Json(body)).into_response())
    }
}

/// `Json<T>` whose rejections are API errors: 400 with serde's message for malformed JSON or
/// wrong fields, 413 for a body over the limit, 415 without a JSON content type.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than the server accepts (--max-body-bytes)",
                ))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "invalid JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn overload_is_503_with_a_retry_only_when_waiting_helps() {
        let busy: ApiError =
            symphony_engine::Overloaded::for_now("busy", Duration::from_secs(1)).into();
        assert_eq!(
            (busy.status, busy.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        // A client told to wait 0 seconds would retry at once.
        let soon: ApiError =
            symphony_engine::Overloaded::for_now("busy", Duration::from_millis(200)).into();
        assert_eq!(soon.retry_after, Some(1));
        let never: ApiError = symphony_engine::Overloaded::until_reconfigured("too big").into();
        assert_eq!(
            (never.status, never.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, None)
        );
        // Through the engine's error, the same.
        let wrapped: ApiError = symphony_engine::Error::from(symphony_engine::Overloaded::for_now(
            "busy",
            Duration::from_secs(2),
        ))
        .into();
        assert_eq!(
            (
                wrapped.status,
                wrapped.retry_after,
                wrapped.message.as_str()
            ),
            (StatusCode::SERVICE_UNAVAILABLE, Some(2), "busy")
        );
    }

    #[test]
    fn each_layer_maps_to_its_status() {
        let store: ApiError = symphony_store::Error::NotFound {
            name: "nope".into(),
            home: "/h".into(),
            available: Vec::new(),
        }
        .into();
        assert_eq!(
            (store.status, store.code()),
            (StatusCode::NOT_FOUND, Some("model_not_found"))
        );
        let rag: ApiError = symphony_rag::Error::Exists("docs".into()).into();
        assert_eq!(rag.status, StatusCode::CONFLICT);
        let query: ApiError = symphony_rag::Error::InvalidQuery("empty".into()).into();
        assert_eq!(query.status, StatusCode::BAD_REQUEST);
        let auth: ApiError = AuthError::InvalidKey.into();
        assert_eq!(
            (auth.status, auth.code()),
            (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
        );
        let key: ApiError = KeyFileError::BadName("a b".into()).into();
        assert_eq!(
            (key.status, key.param),
            (StatusCode::BAD_REQUEST, Some("name"))
        );
        let invalid: ApiError = symphony_engine::Error::InvalidRequest("x".into()).into();
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    }
}
