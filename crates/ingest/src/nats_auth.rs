//! The nats-server authorisation an agency publishing straight to NATS needs: one NKey user
//! per agency that may publish only on its own feed subjects and receive only on its own
//! reply inbox, and one NKey user for the observatory's services. Only public keys are
//! written; the seeds stay with their holders.

use std::fmt::Write;

use crate::agencies::Agency;

/// The NATS account every observatory client lives in (its stream, its feeds).
pub const ACCOUNT: &str = "OBSERVATORY";

/// Where agency `id` publishes its records: `feeds.<id>.incidents`.
pub fn feed_subject(id: &str) -> String {
    format!("feeds.{id}.incidents")
}

/// The reply-inbox prefix agency `id` must connect with (`custom_inbox_prefix` in the
/// clients), the only subjects it may subscribe to.
pub fn inbox_prefix(id: &str) -> String {
    format!("_INBOX_{id}")
}

/// The `accounts { … }` block for nats-server: `service_public_key` gets the whole account;
/// each agency with a NATS key gets its feed subjects and its inbox, nothing else (no
/// `obs.>`, no JetStream API, no other agency's feed).
pub fn accounts_config(service_public_key: &str, agencies: &[Agency]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Written by `observatory nats-config`: include it from nats-server.conf\n\
         # (include \"observatory-accounts.conf\"). Only public NKeys are here.\n",
    );
    writeln!(out, "accounts {{\n  {ACCOUNT}: {{\n    jetstream: enabled\n    users: [").unwrap();
    writeln!(out, "      # the observatory's services: ingest, projector, query, relay").unwrap();
    writeln!(out, "      {{ nkey: \"{service_public_key}\" }}").unwrap();
    let mut agencies: Vec<&Agency> =
        agencies.iter().filter(|a| a.nats_public_key.is_some()).collect();
    agencies.sort_by(|a, b| a.id.cmp(&b.id));
    for agency in agencies {
        let key = agency.nats_public_key.as_deref().expect("filtered");
        let id = &agency.id;
        writeln!(out, "      # agency {id} ({})", agency.name.replace('\n', " ")).unwrap();
        writeln!(
            out,
            "      {{ nkey: \"{key}\", permissions: {{\n          \
             publish: {{ allow: [\"feeds.{id}.>\"] }}\n          \
             subscribe: {{ allow: [\"{}.>\"] }} }} }}",
            inbox_prefix(id)
        )
        .unwrap();
    }
    out.push_str("    ]\n  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(id: &str, key: Option<&str>) -> Agency {
        Agency {
            id: id.into(),
            name: id.to_uppercase(),
            token_sha256: "x".into(),
            added_at: String::new(),
            crosswalk: "iccs".into(),
            nats_public_key: key.map(Into::into),
        }
    }

    #[test]
    fn each_agency_may_publish_on_its_feed_and_read_its_inbox_only() {
        let text = accounts_config(
            "USERVICE",
            &[agency("pn", Some("UPN")), agency("http-only", None), agency("gn", Some("UGN"))],
        );
        assert!(text.contains("{ nkey: \"USERVICE\" }"));
        assert!(text.contains("publish: { allow: [\"feeds.pn.>\"] }"));
        assert!(text.contains("subscribe: { allow: [\"_INBOX_pn.>\"] }"));
        assert!(!text.contains("http-only"), "an agency without a NATS key gets no user");
        assert!(text.find("agency gn").unwrap() < text.find("agency pn").unwrap(), "sorted");
        assert_eq!(feed_subject("pn"), "feeds.pn.incidents");
    }
}
