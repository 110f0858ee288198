//! Turns one agency record (a JSON object, whatever the wire format was) into an event, or
//! into the list of everything wrong with it. Every problem is reported, not just the first,
//! so an agency fixes a record in one round trip.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Map, Value};

use observatory_reference::{Crosswalk, Iccs};

use crate::envelope::Event;
use crate::incident::{
    Channel, Coding, IncidentReported, IncidentWithdrawn, PeriodClosed, VictimType, is_departement,
};
use crate::record::{Field, IncidentRecord, Sent};

pub const MAX_ID_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 500;
/// Earliest plausible occurrence date: catches swapped or truncated years.
const EARLIEST: NaiveDate = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
/// Largest loss one record may declare, in euros, inclusive: 1 000 000 000 € (1e11 cents).
///
/// The largest frauds agencies report are in the hundreds of millions of euros, so a larger
/// amount is almost surely a unit or typing error (cents sent as euros, a digit repeated). The
/// bound also keeps the integer-cents sums downstream far from overflow: an i64 holds about
/// 92 million records at this bound, where the former bound of 1e13 € let about nine thousand
/// records overflow it. Those sums are still checked downstream (the projector nets them
/// modulo 2^64, the query refuses a total that does not fit), since a bound per record cannot
/// bound a sum over any number of records.
pub const MAX_LOSS_EUR: f64 = 1_000_000_000.0;

/// One problem with one field of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub error: String,
}

impl FieldError {
    pub fn new(field: &str, error: impl Into<String>) -> FieldError {
        FieldError { field: field.to_owned(), error: error.into() }
    }
}

/// `field: error`, as a refusal that carries one field error shows it.
impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.error)
    }
}

impl std::error::Error for FieldError {}

pub type ValidatedRecord = Event;

/// The fields a report may send, as its refusals list them.
fn report_fields() -> String {
    Field::ALL.iter().filter(|f| f.on_report()).map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// Validates one record of an agency whose codes go through `crosswalk` (the built-in `iccs`
/// identity crosswalk for feeds already coded in ICCS). `today` bounds `reported_on` (a report
/// cannot come from the future; one day of slack absorbs time zones).
///
/// A record either sends `iccs` (a code of ICCS 1.0) or an `offence_code` the crosswalk maps;
/// nothing is half-mapped. `cyber` may be left out when the crosswalk maps the code (its
/// default applies); it is always true under 0903 (acts against computer systems).
pub fn validate_record(
    record: &IncidentRecord<'_>,
    today: NaiveDate,
    crosswalk: &Crosswalk,
) -> Result<ValidatedRecord, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fields = Fields { record, errors: &mut errors };
    let withdrawn = fields.optional_bool(Field::Withdrawn).unwrap_or(false);
    let allowed: fn(Field) -> bool =
        if withdrawn { Field::on_withdrawal } else { Field::on_report };
    // The common record sends only fields of the feed, and none that its kind refuses.
    let refused = |field: Field| !allowed(field) && record.get(field).is_some_and(|v| !v.is_null());
    if !record.only_feed_fields() || Field::ALL.into_iter().any(refused) {
        for (name, value) in record.fields() {
            let field = Field::of_name(name);
            // CSV feeds mixing reports and withdrawals carry every column; empty cells are null.
            if field.is_some_and(|field| allowed(field) || value.is_null()) {
                continue;
            }
            let why = if withdrawn && field.is_some_and(Field::on_report) {
                "not allowed on a withdrawal (send only agency_incident_id, revision, withdrawn, reason)".to_owned()
            } else if field == Some(Field::Reason) {
                "only allowed on a withdrawal (\"withdrawn\": true)".to_owned()
            } else {
                format!("unknown field; expected one of: {}", report_fields())
            };
            fields.errors.push(FieldError::new(name, why));
        }
    }

    let agency_incident_id = fields.identifier(Field::AgencyIncidentId);
    let revision = fields.revision();
    if withdrawn {
        let reason = fields.optional_text(Field::Reason, MAX_TEXT_LEN);
        return match (agency_incident_id, revision) {
            (Some(agency_incident_id), Some(revision)) if errors.is_empty() => {
                Ok(Event::IncidentWithdrawn(IncidentWithdrawn {
                    agency_incident_id,
                    revision,
                    reason,
                }))
            }
            _ => Err(errors),
        };
    }

    let occurred_on = fields.required_date(Field::OccurredOn);
    let occurred_until = fields.optional_date(Field::OccurredUntil);
    let reported_on = fields.required_date(Field::ReportedOn);
    let sent_iccs = fields.iccs();
    let offence_code = fields.optional_text(Field::OffenceCode, 64);
    let sent_cyber = fields.optional_bool(Field::Cyber);
    let coded = fields.code(sent_iccs.clone(), offence_code.as_deref(), sent_cyber, crosswalk);
    let departement = fields.departement();
    let victim_type =
        fields.required_enum(Field::VictimType, VictimType::parse, VictimType::allowed);
    let channel = fields.required_enum(Field::Channel, Channel::parse, Channel::allowed);
    let loss_eur = fields.loss();

    if let Some(occurred) = occurred_on {
        if occurred < EARLIEST {
            errors.push(FieldError::new(
                "occurred_on",
                format!("{occurred} is before {EARLIEST}; check the year"),
            ));
        }
        if occurred > today + chrono::Days::new(1) {
            errors.push(FieldError::new(
                "occurred_on",
                format!("{occurred} is in the future (today is {today})"),
            ));
        }
        if let Some(until) = occurred_until
            && until < occurred
        {
            errors.push(FieldError::new(
                "occurred_until",
                format!("{until} is before occurred_on {occurred}"),
            ));
        }
        if let Some(reported) = reported_on
            && reported < occurred
        {
            errors.push(FieldError::new(
                "reported_on",
                format!("{reported} is before occurred_on {occurred}"),
            ));
        }
    }
    if let Some(reported) = reported_on
        && reported > today + chrono::Days::new(1)
    {
        errors.push(FieldError::new(
            "reported_on",
            format!("{reported} is in the future (today is {today})"),
        ));
    }

    match (
        agency_incident_id,
        revision,
        occurred_on,
        reported_on,
        coded,
        departement,
        victim_type,
        channel,
    ) {
        (
            Some(id),
            Some(revision),
            Some(occurred_on),
            Some(reported_on),
            Some(coded),
            Some(dep),
            Some(vt),
            Some(ch),
        ) if errors.is_empty() => Ok(Event::IncidentReported(IncidentReported {
            agency_incident_id: id,
            revision,
            occurred_on,
            occurred_until,
            reported_on,
            iccs: coded.iccs,
            offence_code,
            cyber: coded.cyber,
            departement: dep,
            victim_type: vt,
            channel: ch,
            loss_eur,
            unit: coded.unit,
            coding: coded.coding,
        })),
        _ => Err(errors),
    }
}

struct Coded {
    iccs: String,
    cyber: bool,
    unit: observatory_reference::Unit,
    coding: Option<Coding>,
}

/// The unit a source counts in when a record is not mapped through the crosswalk: the unit
/// all its rows share, else offences (the ICCS unit of classification).
pub fn crosswalk_unit(crosswalk: &Crosswalk) -> observatory_reference::Unit {
    crosswalk.unit()
}

/// A date written exactly `YYYY-MM-DD` in ASCII digits, or `Err(true)` when it has that form but
/// is not a day of the calendar (`2024-02-30`). chrono alone would take `+2024-3-05` or
/// `2024-03- 5`.
fn strict_date(s: &str) -> Result<NaiveDate, bool> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return Err(false);
    }
    let number = |range: std::ops::Range<usize>| s[range].parse::<u32>().map_err(|_| false);
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?).ok_or(true)
}

/// Whether a month is written exactly `YYYY-MM` in ASCII digits, with a month 01 to 12.
fn is_strict_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(s[5..].parse::<u32>(), Ok(1..=12))
}

/// Validates a `POST /v1/periods/close` body: `{"month": "YYYY-MM", "departements": [...]}`.
/// `today` bounds the month: a month after the current one cannot be complete.
pub fn validate_period_close<R: RecordFields + ?Sized>(
    record: &R,
    today: NaiveDate,
) -> Result<PeriodClosed, Vec<FieldError>> {
    let mut errors = Vec::new();
    for (name, _) in record.fields() {
        if name != "month" && name != "departements" {
            errors.push(FieldError::new(
                name,
                "unknown field; expected month and optionally departements",
            ));
        }
    }
    let current = today.format("%Y-%m").to_string();
    let month = match record.field("month") {
        // Both "YYYY-MM": the strings order as the months do.
        Some(Value::String(m)) if is_strict_month(m) && *m > current => {
            errors.push(FieldError::new(
                "month",
                format!("{m} is in the future (the current month is {current}); close a month once it is complete"),
            ));
            None
        }
        Some(Value::String(m)) if is_strict_month(m) => Some(m.clone()),
        Some(other) => {
            errors.push(FieldError::new(
                "month",
                format!("expected a month \"YYYY-MM\", got {}", type_name(other)),
            ));
            None
        }
        None => {
            errors.push(FieldError::new("month", "required (\"YYYY-MM\")"));
            None
        }
    };
    let departements = match record.field("departements") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut codes = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(code) if is_departement(code) => codes.push(code.to_owned()),
                    _ => errors.push(FieldError::new(
                        "departements",
                        format!("{} is not an INSEE département code", type_name(item)),
                    )),
                }
            }
            codes.sort();
            codes.dedup();
            Some(codes)
        }
        Some(other) => {
            errors.push(FieldError::new(
                "departements",
                format!("expected a non-empty list of codes, got {}", type_name(other)),
            ));
            None
        }
    };
    match month {
        Some(month) if errors.is_empty() => Ok(PeriodClosed { month, departements }),
        _ => Err(errors),
    }
}

/// The fields of a period closure as sent, whatever holds them: a JSON object, or the
/// ingest's list of the fields read (which notices a key sent twice). Incident records have
/// their own type, [`IncidentRecord`], read straight into the feed's fields.
pub trait RecordFields {
    /// The value sent for `name`, if any (the first, if the key came twice).
    fn field(&self, name: &str) -> Option<&Value>;
    /// Every field, in the order sent, each key once.
    fn fields(&self) -> impl Iterator<Item = (&str, &Value)>;
}

impl RecordFields for Map<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.iter().map(|(name, value)| (name.as_str(), value))
    }
}

struct Fields<'r, 'a> {
    record: &'r IncidentRecord<'a>,
    errors: &'r mut Vec<FieldError>,
}

/// Characters that do not show, beyond the control characters: zero-width (U+200B–U+200D,
/// U+2060, U+FEFF) and bidirectional controls (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Why an identifier that is not empty cannot serve as one: two ids that look the same must
/// be the same, so nothing around it or invisible in it is accepted.
pub(crate) fn identifier_problem(id: &str) -> Option<String> {
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Some(format!("contains a control character U+{:04X}", u32::from(c)));
    }
    if let Some(c) = id.chars().find(|&c| is_invisible(c)) {
        return Some(format!("contains an invisible character U+{:04X}", u32::from(c)));
    }
    (id.trim() != id).then(|| "has leading or trailing spaces".to_owned())
}

/// Names the JSON type of a value, quoting short strings ([`Sent::type_name`]).
fn type_name(value: &Value) -> String {
    Sent::of_value(value).type_name()
}

impl<'r, 'a> Fields<'r, 'a> {
    /// The value of a field, treating JSON null like absence. Borrowed from the record, not
    /// from `self`: a value is checked while problems are noted, without a copy of it.
    fn get(&self, field: Field) -> Option<&'r Sent<'a>> {
        let record: &'r IncidentRecord<'a> = self.record;
        record.get(field).filter(|v| !v.is_null())
    }

    fn fail<T>(&mut self, field: Field, error: impl Into<String>) -> Option<T> {
        self.errors.push(FieldError::new(field.name(), error));
        None
    }

    fn missing<T>(&mut self, field: Field) -> Option<T> {
        self.fail(field, "required")
    }

    fn identifier(&mut self, field: Field) -> Option<String> {
        match self.get(field) {
            None => self.missing(field),
            Some(Sent::Str(s)) if s.trim().is_empty() => self.fail(field, "must not be empty"),
            Some(Sent::Str(s)) if s.len() > MAX_ID_LEN => {
                self.fail(field, format!("{} bytes long; at most {MAX_ID_LEN}", s.len()))
            }
            Some(Sent::Str(s)) => match identifier_problem(s) {
                Some(problem) => self.fail(field, problem),
                None => Some(s.to_string()),
            },
            Some(other) => {
                self.fail(field, format!("expected a string, got {}", other.type_name()))
            }
        }
    }

    fn revision(&mut self) -> Option<u32> {
        let field = Field::Revision;
        match self.get(field) {
            None => Some(1),
            Some(Sent::Number(n)) => match n.as_u64() {
                Some(r) if r >= 1 && r <= u64::from(u32::MAX) => Some(r as u32),
                _ => self.fail(field, format!("expected an integer ≥ 1, got {n}")),
            },
            Some(other) => {
                self.fail(field, format!("expected an integer ≥ 1, got {}", other.type_name()))
            }
        }
    }

    fn date(&mut self, field: Field, value: &Sent<'_>) -> Option<NaiveDate> {
        match value {
            Sent::Str(s) => match strict_date(s) {
                Ok(d) => Some(d),
                Err(true) => {
                    self.fail(field, format!("'{s}' is not a day of the calendar (YYYY-MM-DD)"))
                }
                Err(false) => {
                    self.fail(field, format!("'{s}' is not a date in the form YYYY-MM-DD"))
                }
            },
            other => self.fail(
                field,
                format!("expected a date string YYYY-MM-DD, got {}", other.type_name()),
            ),
        }
    }

    fn required_date(&mut self, field: Field) -> Option<NaiveDate> {
        match self.get(field) {
            None => self.missing(field),
            Some(value) => self.date(field, value),
        }
    }

    fn optional_date(&mut self, field: Field) -> Option<NaiveDate> {
        let value = self.get(field)?;
        self.date(field, value)
    }

    fn optional_bool(&mut self, field: Field) -> Option<bool> {
        match self.get(field) {
            None => None,
            Some(Sent::Bool(b)) => Some(*b),
            Some(other) => {
                self.fail(field, format!("expected true or false, got {}", other.type_name()))
            }
        }
    }

    fn optional_text(&mut self, field: Field, max: usize) -> Option<String> {
        match self.get(field) {
            None => None,
            Some(Sent::Str(s)) if s.len() > max => {
                self.fail(field, format!("{} bytes long; at most {max}", s.len()))
            }
            Some(Sent::Str(s)) => Some(s.to_string()),
            Some(other) => {
                self.fail(field, format!("expected a string, got {}", other.type_name()))
            }
        }
    }

    /// The `iccs` the agency sent, if any, checked against the classification.
    fn iccs(&mut self) -> Option<String> {
        let field = Field::Iccs;
        match self.get(field) {
            None => None,
            Some(Sent::Str(s))
                if (2..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                if Iccs::v1_0().contains(s) {
                    Some(s.to_string())
                } else {
                    self.fail(
                        field,
                        format!("'{s}' is not a code of ICCS 1.0; see GET /v1/reference/iccs"),
                    )
                }
            }
            Some(Sent::Str(s)) => self
                .fail(field, format!("'{s}' is not an ICCS code (2 to 6 digits, e.g. \"0903\")")),
            Some(other) => self.fail(
                field,
                format!("expected a string of 2 to 6 digits, got {}", other.type_name()),
            ),
        }
    }

    /// Resolves ICCS, cyber and unit from what the agency sent and its crosswalk.
    fn code(
        &mut self,
        sent_iccs: Option<String>,
        offence_code: Option<&str>,
        sent_cyber: Option<bool>,
        crosswalk: &Crosswalk,
    ) -> Option<Coded> {
        let invalid_iccs = self.get(Field::Iccs).is_some() && sent_iccs.is_none();
        let mapping = match offence_code {
            Some(code) if !crosswalk.identity => match crosswalk.map(code) {
                Ok(mapping) => Some(mapping),
                // With its own valid ICCS code the record does not need the crosswalk.
                Err(_) if sent_iccs.is_some() => None,
                Err(error) => return self.fail(Field::OffenceCode, error.to_string()),
            },
            _ => None,
        };
        let iccs = match (&sent_iccs, mapping) {
            (Some(iccs), _) => iccs.clone(),
            (None, Some(mapping)) => mapping.iccs.clone(),
            (None, None) if invalid_iccs => return None,
            (None, None) if crosswalk.identity => {
                return self.fail(
                    Field::Iccs,
                    "required: this agency's feed is coded in ICCS (e.g. \"0903\")",
                );
            }
            (None, None) => {
                return self.fail(
                    Field::Iccs,
                    format!(
                        "required: send an iccs code or an offence_code of crosswalk {} v{}",
                        crosswalk.name, crosswalk.version
                    ),
                );
            }
        };
        let cyber = match (sent_cyber, mapping) {
            (Some(cyber), _) => cyber,
            (None, Some(mapping)) if sent_iccs.is_none() => mapping.cyber,
            (None, _) if self.get(Field::Cyber).is_some() => return None,
            (None, _) => return self.missing(Field::Cyber),
        };
        if !cyber && Iccs::v1_0().always_cyber(&iccs) {
            return self.fail(Field::Cyber, format!("false contradicts ICCS {iccs}: acts against computer systems (0903) are always cyber"));
        }
        let unit = mapping.map(|m| m.unit).unwrap_or_else(|| crosswalk_unit(crosswalk));
        let coding = (!crosswalk.identity).then(|| Coding {
            crosswalk: crosswalk.name.clone(),
            version: crosswalk.version,
            iccs_from_crosswalk: sent_iccs.is_none(),
            cyber_from_crosswalk: sent_cyber.is_none(),
        });
        Some(Coded { iccs, cyber, unit, coding })
    }

    /// `Some(None)` is a valid "unknown département".
    fn departement(&mut self) -> Option<Option<String>> {
        let field = Field::Departement;
        match self.get(field) {
            None => Some(None),
            Some(Sent::Str(s)) if is_departement(s) => Some(Some(s.to_string())),
            Some(Sent::Str(s)) => self.fail(
                field,
                format!("'{s}' is not an INSEE département code (\"01\"..\"95\", \"2A\", \"2B\", \"971\"..\"976\"; null when unknown)"),
            ),
            Some(other) => self.fail(field, format!("expected a string or null, got {}", other.type_name())),
        }
    }

    fn required_enum<T>(
        &mut self,
        field: Field,
        parse: fn(&str) -> Option<T>,
        allowed: fn() -> String,
    ) -> Option<T> {
        match self.get(field) {
            None => self.fail(
                field,
                format!("required (one of: {}; use \"unknown\" when not known)", allowed()),
            ),
            Some(Sent::Str(s)) => match parse(s) {
                Some(v) => Some(v),
                None => self.fail(field, format!("'{s}' is not one of: {}", allowed())),
            },
            Some(other) => {
                self.fail(field, format!("expected a string, got {}", other.type_name()))
            }
        }
    }

    fn loss(&mut self) -> Option<f64> {
        let field = Field::LossEur;
        match self.get(field) {
            None => None,
            Some(Sent::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() && (0.0..=MAX_LOSS_EUR).contains(&x) => Some(x),
                Some(x) if x > MAX_LOSS_EUR => self.fail(
                    field,
                    format!("{n} is over {MAX_LOSS_EUR} €, the most one record may declare; check the unit (euros, not cents)"),
                ),
                _ => self.fail(field, format!("expected an amount ≥ 0 in euros, got {n}")),
            },
            Some(other) => self.fail(field, format!("expected a number, got {}", other.type_name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
    }

    fn check(value: Value) -> Result<Event, Vec<FieldError>> {
        validate_record(&IncidentRecord::from(value.as_object().unwrap()), today(), identity())
    }

    fn identity() -> &'static Crosswalk {
        observatory_reference::Crosswalks::builtin()
            .latest(observatory_reference::IDENTITY)
            .unwrap()
    }

    fn natinf(version: u32) -> &'static Crosswalk {
        observatory_reference::Crosswalks::builtin().get("natinf", version).unwrap()
    }

    fn example() -> Value {
        json!({"agency_incident_id":"PN-2024-000123","revision":1,"occurred_on":"2024-03-05","reported_on":"2024-03-07",
               "offence_code":"323-1","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual",
               "channel":"email","loss_eur":1250.5})
    }

    #[test]
    fn the_issue_example_is_valid() {
        let Event::IncidentReported(r) = check(example()).unwrap() else { panic!("not a report") };
        assert_eq!(r.iccs, "0903");
        assert_eq!(r.departement.as_deref(), Some("75"));
        assert_eq!(r.loss_eur, Some(1250.5));
    }

    #[test]
    fn revision_defaults_to_one_and_departement_may_be_null() {
        let mut v = example();
        v.as_object_mut().unwrap().remove("revision");
        v["departement"] = Value::Null;
        let event = check(v).unwrap();
        assert_eq!(event.incident().unwrap().1, 1);
        let Event::IncidentReported(r) = event else { panic!() };
        assert_eq!(r.departement, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut v = example();
        v["revision"] = json!(0);
        v["departement"] = json!("20");
        v["channel"] = json!("pigeon");
        v["reported_on"] = json!("2024-03-01");
        v["colour"] = json!("red");
        let errors = check(v).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields.len(), 5, "{errors:?}");
        for f in ["revision", "departement", "channel", "reported_on", "colour"] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
    }

    #[test]
    fn withdrawal_takes_only_its_own_fields() {
        let ok = check(
            json!({"agency_incident_id":"X","revision":2,"withdrawn":true,"reason":"duplicate"}),
        )
        .unwrap();
        assert!(matches!(ok, Event::IncidentWithdrawn(_)));
        let err =
            check(json!({"agency_incident_id":"X","revision":2,"withdrawn":true,"iccs":"0903"}))
                .unwrap_err();
        assert_eq!(err[0].field, "iccs");
    }

    #[test]
    fn wrong_types_are_named() {
        let mut v = example();
        v["cyber"] = json!("yes");
        v["loss_eur"] = json!(-3);
        v["iccs"] = json!(903);
        let errors = check(v).unwrap_err();
        assert!(errors.iter().any(|e| e.field == "cyber" && e.error.contains("true or false")));
        assert!(errors.iter().any(|e| e.field == "loss_eur"));
        assert!(errors.iter().any(|e| e.field == "iccs" && e.error.contains("a number")));
    }

    #[test]
    fn agency_codes_are_mapped_through_the_crosswalk() {
        let mut v = example();
        let record = v.as_object_mut().unwrap();
        record.remove("iccs");
        record.remove("cyber");
        let Event::IncidentReported(r) =
            validate_record(&IncidentRecord::from(&*record), today(), natinf(1)).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.iccs, "09031");
        assert!(r.cyber);
        assert_eq!(r.unit, observatory_reference::Unit::Offence);
        let coding = r.coding.unwrap();
        assert_eq!(
            (coding.crosswalk.as_str(), coding.version, coding.iccs_from_crosswalk),
            ("natinf", 1, true)
        );

        record.insert("offence_code".into(), json!("323-9"));
        let errors =
            validate_record(&IncidentRecord::from(&*record), today(), natinf(1)).unwrap_err();
        assert_eq!(errors[0].field, "offence_code");
        assert!(errors[0].error.contains("'323-9' is not in crosswalk natinf v1"), "{errors:?}");
    }

    #[test]
    fn iccs_codes_must_exist_and_0903_is_always_cyber() {
        let mut v = example();
        v["iccs"] = json!("0999");
        assert!(check(v).unwrap_err()[0].error.contains("not a code of ICCS 1.0"));
        let mut v = example();
        v["cyber"] = json!(false);
        assert!(check(v).unwrap_err()[0].error.contains("always cyber"));
        let mut v = example();
        v.as_object_mut().unwrap().remove("iccs");
        assert!(check(v).unwrap_err()[0].error.contains("coded in ICCS"));
    }

    #[test]
    fn period_closures_are_checked() {
        let ok = validate_period_close(
            json!({"month": "2024-03", "departements": ["92", "75", "75"]}).as_object().unwrap(),
            today(),
        );
        assert_eq!(ok.unwrap().departements, Some(vec!["75".to_owned(), "92".to_owned()]));
        let bad = validate_period_close(
            json!({"month": "2024-13", "departements": ["20"]}).as_object().unwrap(),
            today(),
        )
        .unwrap_err();
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn dates_are_strict() {
        for bad in ["2024-3-5", "05/03/2024", "2024-02-30", "2030-01-01"] {
            let mut v = example();
            v["occurred_on"] = json!(bad);
            assert!(check(v).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dates_are_four_two_two_ascii_digits() {
        let bad = [
            "+2024-3-05",
            " 2024-3-05",
            "2024-03- 5",
            "2024-3-5  ",
            "2024-03-5 ",
            "+024-03-05",
            "2024/03/05",
            "2024-03-05\n",
        ];
        for field in ["occurred_on", "occurred_until", "reported_on"] {
            for date in bad {
                let mut v = example();
                v[field] = json!(date);
                let errors = check(v).expect_err(&format!("{field} {date:?} accepted"));
                assert!(
                    errors.iter().any(|e| e.field == field && e.error.contains("YYYY-MM-DD")),
                    "{field} {date:?}: {errors:?}"
                );
            }
        }
        let mut v = example();
        v["occurred_until"] = json!("2024-03-06");
        check(v).unwrap();
    }

    #[test]
    fn period_months_are_four_two_ascii_digits() {
        for bad in [
            "2024-3", "2024- 3", " 2024-3", "+2024-3", "2024-00", "2024-13", "2024/03", "24-03-1",
            "2024-3 ",
        ] {
            let errors = validate_period_close(json!({"month": bad}).as_object().unwrap(), today())
                .expect_err(&format!("{bad:?} accepted"));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "month");
            assert!(errors[0].error.contains("YYYY-MM"), "{errors:?}");
        }
        validate_period_close(json!({"month": "2024-12"}).as_object().unwrap(), today()).unwrap();
    }

    #[test]
    fn a_month_after_the_current_one_cannot_be_closed() {
        // today() is 2025-06-01: June 2025 has begun and may be closed, July may not.
        for ok in ["2025-06", "2025-05", "1999-12"] {
            validate_period_close(json!({"month": ok}).as_object().unwrap(), today()).unwrap();
        }
        for future in ["2025-07", "2026-01", "9999-12"] {
            let errors =
                validate_period_close(json!({"month": future}).as_object().unwrap(), today())
                    .unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "month");
            assert!(
                errors[0].error.contains("future") && errors[0].error.contains("2025-06"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn losses_are_bounded_per_record() {
        for ok in [json!(0), json!(1_000_000_000), json!(1_000_000_000.0), json!(999_999_999.999)] {
            let mut v = example();
            v["loss_eur"] = ok.clone();
            check(v).unwrap_or_else(|e| panic!("{ok} refused: {e:?}"));
        }
        for bad in [json!(1_000_000_000.01), json!(1_000_000_001), json!(9e12), json!(1e300)] {
            let mut v = example();
            v["loss_eur"] = bad.clone();
            let errors = check(v).expect_err(&format!("{bad} accepted"));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "loss_eur");
            assert!(errors[0].error.contains("1000000000"), "the bound is named: {errors:?}");
        }
    }

    #[test]
    fn identifiers_refuse_surrounding_spaces_and_invisible_characters() {
        let cases = [
            (" PN-1", "leading or trailing spaces"),
            ("PN-1 ", "leading or trailing spaces"),
            ("PN-1\u{a0}", "leading or trailing spaces"),
            ("PN\u{200B}1", "invisible character U+200B"),
            ("PN\u{200C}1", "invisible character U+200C"),
            ("PN\u{200D}1", "invisible character U+200D"),
            ("PN\u{2060}1", "invisible character U+2060"),
            ("\u{FEFF}PN1", "invisible character U+FEFF"),
            ("PN\u{200E}1", "invisible character U+200E"),
            ("PN\u{200F}1", "invisible character U+200F"),
            ("PN\u{202A}1", "invisible character U+202A"),
            ("PN\u{202E}1", "invisible character U+202E"),
            ("PN\u{2066}1", "invisible character U+2066"),
            ("PN\u{2069}1", "invisible character U+2069"),
            ("PN\u{7}1", "control character U+0007"),
            ("PN-1\t", "control character U+0009"),
        ];
        for (id, why) in cases {
            for withdrawn in [false, true] {
                let v = if withdrawn {
                    json!({"agency_incident_id": id, "revision": 2, "withdrawn": true})
                } else {
                    let mut v = example();
                    v["agency_incident_id"] = json!(id);
                    v
                };
                let errors = check(v).expect_err(&format!("{id:?} accepted"));
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(errors[0].field, "agency_incident_id");
                assert!(errors[0].error.contains(why), "{id:?}: {errors:?}");
            }
        }
        let mut v = example();
        v["agency_incident_id"] = json!("PN 2024/000123-é");
        check(v).unwrap();
    }
}
