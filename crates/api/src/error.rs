//! The error body every failed request carries.

use serde::{Deserialize, Serialize};

/// `{"error": {...}, "message": "..."}`: the one shape of every error
/// response. The top-level `message` repeats `error.message`, because
/// Shadeform documents `{"message": ...}` and its clients read it there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// Same as `error.message`.
    #[serde(default)]
    pub message: String,
}

/// What went wrong, for a program (`code`) and for a person (`message`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable snake_case identifier, such as `invalid_request` or `not_found`.
    pub code: String,
    /// One clear sentence; never internal detail.
    pub message: String,
    /// The request field at fault, as a dotted path, when one field is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
