//! Access tiers and what each is served. Without a token: the public tier, whose counts are
//! perturbed by the cell-key method, whose small-cell losses and small survey domains are
//! withheld, and whose answers say so. A reader token (`observatory reader add`) of role
//! `researcher` reads exact numbers, marked as such; `publisher` may also create releases. A
//! token that is not a reader's is a 401: never a silent downgrade to public, and never exact
//! numbers by mistake.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use observatory_access::{ReaderRegistry, Role};
use observatory_disclosure::Policy;
use observatory_store::Manifest;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Public,
    Researcher,
    Publisher,
}

impl Tier {
    pub fn exact(self) -> bool {
        self != Tier::Public
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Public => "public",
            Tier::Researcher => "researcher",
            Tier::Publisher => "publisher",
        }
    }
}

/// The policy in force and who may read past it.
#[derive(Debug, Clone)]
pub struct Disclosure {
    /// Shared with the aggregation task of each public request (a table is not copied per
    /// request).
    pub policy: Arc<Policy>,
    /// The readers file; `None` serves everyone the public tier.
    pub readers: Option<ReaderRegistry>,
    /// The fingerprint of the deployment secret (`--disclosure-secret-file`): public answers
    /// come only from projections keyed with it.
    pub record_keys: Option<String>,
}

impl Default for Disclosure {
    fn default() -> Self {
        Disclosure { policy: Arc::new(Policy::standard()), readers: None, record_keys: None }
    }
}

impl Disclosure {
    /// The tier of a request: public without `Authorization`, the reader's role with a reader
    /// token, 401 otherwise.
    pub fn tier(&self, headers: &HeaderMap) -> Result<Tier, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(Tier::Public) };
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let text = value.to_str().map_err(|_| unauthorized("Authorization header is not ASCII"))?;
        let token = observatory_access::bearer_token(text).ok_or_else(|| {
            unauthorized(
                "Authorization must be 'Bearer <token>' (or leave it out for the public numbers)",
            )
        })?;
        let reader = self.readers.as_ref().and_then(|r| r.authenticate(token)).ok_or_else(|| {
            unauthorized(
                "unknown reader token: reader tokens come from `observatory reader add NAME --role researcher|publisher` \
                 (an agency's token only sends feeds); leave Authorization out for the public numbers",
            )
        })?;
        Ok(match reader.role {
            Role::Researcher => Tier::Researcher,
            Role::Publisher => Tier::Publisher,
        })
    }

    /// The policy to apply for `tier`: `None` serves exact numbers.
    pub fn policy_for(&self, tier: Tier) -> Option<&Arc<Policy>> {
        (!tier.exact()).then_some(&self.policy)
    }

    /// The `disclosure` object of a JSON answer.
    pub fn describe(&self, tier: Tier) -> Value {
        if tier.exact() {
            return json!({"tier": tier.name(), "method": "none", "exact": true});
        }
        let mut parameters = serde_json::to_value(self.policy.parameters()).expect("serialises");
        parameters["tier"] = json!("public");
        parameters["exact"] = json!(false);
        parameters["note"] = json!(
            "counts are perturbed by the cell-key method: the same cell always gets the same noise, zeros stay \
             zero, no count is published as 1..js, and each total is perturbed from its own records, so rows \
             need not add up to totals"
        );
        parameters
    }

    /// The `observatory-disclosure` header of a CSV answer.
    pub fn header(&self, tier: Tier) -> String {
        if tier.exact() {
            return format!("{}; exact", tier.name());
        }
        let p = self.policy.parameters();
        format!(
            "public; cell-key ptable={} D={} V={} js={}; not additive; loss withheld below {} and rounded to {}; \
             survey domains under {} respondents withheld",
            p.ptable, p.d, p.v, p.js, p.loss_min_count, p.loss_rounding, p.survey_min_respondents
        )
    }

    /// Refuses to publish perturbed numbers from a projection whose record keys were not made
    /// with this deployment's secret (or not made at all): its cell keys would be wrong, and the
    /// noise predictable. Exact answers do not depend on keys.
    pub fn check_keys(&self, tier: Tier, manifest: Option<&Manifest>) -> Result<(), ApiError> {
        let Some(manifest) = manifest.filter(|_| !tier.exact()) else { return Ok(()) };
        let found = manifest.disclosure.get(Manifest::RECORD_KEYS).map(String::as_str);
        let usable = match (found, &self.record_keys) {
            (None, _) => false,
            (Some(found), _) if found == Manifest::NO_RECORD_KEYS => false,
            (Some(found), Some(expected)) => found == expected,
            (Some(_), None) => true,
        };
        if usable {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "public numbers cannot be served from {} version {}: its records were keyed with {} and this service's \
                 disclosure secret is {}; run `observatory rebuild` with the deployment's secret \
                 (--disclosure-secret-file), or read exact numbers with a reader token",
                manifest.projection,
                manifest.version,
                found.map_or("no secret (an older build)".to_owned(), |f| format!("secret {f}")),
                self.record_keys.as_deref().unwrap_or("not set")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_store::ProjectionId;

    fn keyed(keys: Option<&str>) -> Manifest {
        let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "TEST");
        if let Some(keys) = keys {
            manifest.disclosure.insert(Manifest::RECORD_KEYS.into(), keys.into());
        }
        manifest
    }

    /// Public numbers come only from a projection keyed with this deployment's secret; exact
    /// ones from any.
    #[test]
    fn public_answers_need_the_deployment_s_record_keys() {
        let disclosure = Disclosure { record_keys: Some("aaaa".into()), ..Disclosure::default() };
        assert!(disclosure.check_keys(Tier::Public, Some(&keyed(Some("aaaa")))).is_ok());
        assert!(disclosure.check_keys(Tier::Public, None).is_ok(), "nothing committed: zeros");
        for manifest in [keyed(Some("bbbb")), keyed(Some(Manifest::NO_RECORD_KEYS)), keyed(None)] {
            let error = disclosure.check_keys(Tier::Public, Some(&manifest)).unwrap_err();
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(error.message().contains("observatory rebuild"), "{}", error.message());
            assert!(disclosure.check_keys(Tier::Researcher, Some(&manifest)).is_ok());
        }
    }

    #[test]
    fn no_token_is_public_and_any_other_token_is_refused() {
        let disclosure = Disclosure::default();
        assert_eq!(disclosure.tier(&HeaderMap::new()).unwrap(), Tier::Public);
        for value in ["Bearer obr_unknown", "Basic abc", "Bearer", "bearer  x"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            let error = disclosure.tier(&headers).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{value}");
        }
        assert_eq!(disclosure.describe(Tier::Public)["D"], 5);
        assert_eq!(disclosure.describe(Tier::Researcher)["exact"], true);
        assert!(
            disclosure.header(Tier::Public).starts_with("public; cell-key ptable=1 D=5 V=3 js=2")
        );
    }
}
