//! Arrow schemas of the incident projection's tables (`counts`, `state`, `coverage`) and
//! conversions to and from record batches. Column names are the store's
//! [`layout`](observatory_store::layout) constants, which the query crate reads too.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Float64Array,
    Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
    UInt8Array, UInt8Builder, UInt32Array, UInt32Builder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use observatory_model::{Channel, IncidentReported, Unit, VictimType};
use observatory_reference::Geography;
use observatory_store::layout::{counts, coverage, state};
use observatory_store::{ParquetEncoder, StoreError};

#[cfg(test)]
use super::fold::StateRow;
use super::fold::{Cell, Closure, Fold, Tally};

/// Rows turned into a batch and encoded at a time when a table is written in chunks (a
/// flush's state rows, a year of counts): memory holds the encoded file and one chunk of rows.
pub const CHUNK_ROWS: usize = 65_536;

pub fn counts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(counts::YEAR, DataType::Int32, false),
        Field::new(counts::MONTH, DataType::Utf8, false),
        Field::new(counts::DEPARTEMENT, DataType::Utf8, true),
        Field::new(counts::ICCS, DataType::Utf8, false),
        Field::new(counts::CYBER, DataType::Boolean, false),
        Field::new(counts::VICTIM_TYPE, DataType::Utf8, false),
        Field::new(counts::CHANNEL, DataType::Utf8, false),
        Field::new(counts::SOURCE, DataType::Utf8, false),
        Field::new(counts::UNIT, DataType::Utf8, false),
        // Roll-ups precomputed at write time so queries group without string functions.
        Field::new(counts::ICCS_SECTION, DataType::Utf8, false),
        Field::new(counts::ICCS_DIVISION, DataType::Utf8, true),
        Field::new(counts::ICCS_GROUP, DataType::Utf8, true),
        Field::new(counts::REGION, DataType::Utf8, true),
        Field::new(counts::COUNT, DataType::Int64, false),
        Field::new(counts::LOSS_CENTS, DataType::Int64, false),
        Field::new(counts::KEY_SUM, DataType::Int64, false),
    ]))
}

/// Rows of count deltas (or a snapshot of totals: the same shape, summed by readers).
pub fn counts_batch(fold: &Fold, cells: &[(Cell, Tally)]) -> RecordBatch {
    let n = cells.len();
    let mut year = Int32Builder::with_capacity(n);
    let mut month = StringBuilder::with_capacity(n, n * 7);
    let mut departement = StringBuilder::with_capacity(n, n * 2);
    let mut iccs = StringBuilder::with_capacity(n, n * 4);
    let mut cyber = BooleanBuilder::with_capacity(n);
    let mut victim_type = StringBuilder::with_capacity(n, n * 10);
    let mut channel = StringBuilder::with_capacity(n, n * 8);
    let mut source = StringBuilder::with_capacity(n, n * 4);
    let mut unit = StringBuilder::with_capacity(n, n * 7);
    let mut section = StringBuilder::with_capacity(n, n * 2);
    let mut division = StringBuilder::with_capacity(n, n * 4);
    let mut group = StringBuilder::with_capacity(n, n * 5);
    let mut region = StringBuilder::with_capacity(n, n * 2);
    let mut count = Int64Builder::with_capacity(n);
    let mut loss = Int64Builder::with_capacity(n);
    let mut key_sum = Int64Builder::with_capacity(n);
    let geography = Geography::france();
    for (cell, tally) in cells {
        year.append_value(cell.year());
        month.append_value(cell.month_label());
        departement.append_option(fold.departement_code(cell));
        iccs.append_value(fold.iccs_code(cell));
        cyber.append_value(cell.cyber);
        victim_type.append_value(cell.victim_type.as_str());
        channel.append_value(cell.channel.as_str());
        source.append_value(fold.source_name(cell));
        unit.append_value(cell.unit.as_str());
        let code = fold.iccs_code(cell);
        section.append_value(&code[..2]);
        division.append_option(code.get(..4));
        group.append_option(code.get(..5));
        region.append_option(
            fold.departement_code(cell)
                .and_then(|d| geography.region_of(d))
                .map(|r| r.code.as_str()),
        );
        count.append_value(tally.count);
        loss.append_value(tally.loss_cents);
        key_sum.append_value(tally.key_sum);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(year.finish()),
        Arc::new(month.finish()),
        Arc::new(departement.finish()),
        Arc::new(iccs.finish()),
        Arc::new(cyber.finish()),
        Arc::new(victim_type.finish()),
        Arc::new(channel.finish()),
        Arc::new(source.finish()),
        Arc::new(unit.finish()),
        Arc::new(section.finish()),
        Arc::new(division.finish()),
        Arc::new(group.finish()),
        Arc::new(region.finish()),
        Arc::new(count.finish()),
        Arc::new(loss.finish()),
        Arc::new(key_sum.finish()),
    ];
    RecordBatch::try_new(counts_schema(), columns).expect("columns match the schema")
}

/// An empty file of state rows, a flush's or a compaction's. An incident's id and its sequence
/// are unique in a file: a dictionary of them is wasted.
pub fn state_encoder(label: &str) -> Result<ParquetEncoder, StoreError> {
    ParquetEncoder::read_whole(state_schema(), label, &[state::AGENCY_INCIDENT_ID, state::SEQUENCE])
}

pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(state::SOURCE, DataType::Utf8, false),
        Field::new(state::AGENCY_INCIDENT_ID, DataType::Utf8, false),
        Field::new(state::REVISION, DataType::UInt32, false),
        Field::new(state::SEQUENCE, DataType::UInt64, false),
        Field::new(state::WITHDRAWN, DataType::Boolean, false),
        Field::new(state::RECORD_KEY, DataType::UInt8, false),
        Field::new(state::OCCURRED_ON, DataType::Date32, true),
        Field::new(state::OCCURRED_UNTIL, DataType::Date32, true),
        Field::new(state::REPORTED_ON, DataType::Date32, true),
        Field::new(state::ICCS, DataType::Utf8, true),
        Field::new(state::OFFENCE_CODE, DataType::Utf8, true),
        Field::new(state::CYBER, DataType::Boolean, true),
        Field::new(state::DEPARTEMENT, DataType::Utf8, true),
        Field::new(state::VICTIM_TYPE, DataType::Utf8, true),
        Field::new(state::CHANNEL, DataType::Utf8, true),
        Field::new(state::LOSS_EUR, DataType::Float64, true),
        Field::new(state::UNIT, DataType::Utf8, true),
        Field::new(state::CROSSWALK, DataType::Utf8, true),
        Field::new(state::CROSSWALK_VERSION, DataType::UInt32, true),
        Field::new(state::ICCS_FROM_CROSSWALK, DataType::Boolean, true),
        Field::new(state::CYBER_FROM_CROSSWALK, DataType::Boolean, true),
    ]))
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

fn to_days(date: NaiveDate) -> i32 {
    (date - EPOCH).num_days() as i32
}

pub(super) fn from_days(days: i32) -> NaiveDate {
    EPOCH + chrono::Days::new(days as u64)
}

/// State rows appended as incidents change, straight into Arrow builders: a compact column
/// layout instead of one boxed record per change, and no copy between fold and file.
#[derive(Default)]
pub struct StateBuilder {
    source: StringBuilder,
    id: StringBuilder,
    revision: UInt32Builder,
    sequence: UInt64Builder,
    withdrawn: BooleanBuilder,
    record_key: UInt8Builder,
    occurred_on: Date32Builder,
    occurred_until: Date32Builder,
    reported_on: Date32Builder,
    iccs: StringBuilder,
    offence_code: StringBuilder,
    cyber: BooleanBuilder,
    departement: StringBuilder,
    victim_type: StringBuilder,
    channel: StringBuilder,
    loss: Float64Builder,
    unit: StringBuilder,
    crosswalk: StringBuilder,
    crosswalk_version: UInt32Builder,
    iccs_from: BooleanBuilder,
    cyber_from: BooleanBuilder,
}

impl StateBuilder {
    /// One changed incident; `report` is `None` when it was withdrawn.
    pub fn append(
        &mut self,
        source: &str,
        agency_incident_id: &str,
        revision: u32,
        sequence: u64,
        record_key: u8,
        report: Option<&IncidentReported>,
    ) {
        self.source.append_value(source);
        self.id.append_value(agency_incident_id);
        self.revision.append_value(revision);
        self.sequence.append_value(sequence);
        self.withdrawn.append_value(report.is_none());
        self.record_key.append_value(record_key);
        let r = report;
        self.occurred_on.append_option(r.map(|r| to_days(r.occurred_on)));
        self.occurred_until.append_option(r.and_then(|r| r.occurred_until).map(to_days));
        self.reported_on.append_option(r.map(|r| to_days(r.reported_on)));
        self.iccs.append_option(r.map(|r| r.iccs.as_str()));
        self.offence_code.append_option(r.and_then(|r| r.offence_code.as_deref()));
        self.cyber.append_option(r.map(|r| r.cyber));
        self.departement.append_option(r.and_then(|r| r.departement.as_deref()));
        self.victim_type.append_option(r.map(|r| r.victim_type.as_str()));
        self.channel.append_option(r.map(|r| r.channel.as_str()));
        self.loss.append_option(r.and_then(|r| r.loss_eur));
        self.unit.append_option(r.map(|r| r.unit.as_str()));
        let coding = r.and_then(|r| r.coding.as_ref());
        self.crosswalk.append_option(coding.map(|c| c.crosswalk.as_str()));
        self.crosswalk_version.append_option(coding.map(|c| c.version));
        self.iccs_from.append_option(coding.map(|c| c.iccs_from_crosswalk));
        self.cyber_from.append_option(coding.map(|c| c.cyber_from_crosswalk));
    }

    pub fn len(&self) -> usize {
        arrow::array::ArrayBuilder::len(&self.sequence)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows appended so far as a batch of the state schema; the builder starts empty again.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.revision.finish()),
            Arc::new(self.sequence.finish()),
            Arc::new(self.withdrawn.finish()),
            Arc::new(self.record_key.finish()),
            Arc::new(self.occurred_on.finish()),
            Arc::new(self.occurred_until.finish()),
            Arc::new(self.reported_on.finish()),
            Arc::new(self.iccs.finish()),
            Arc::new(self.offence_code.finish()),
            Arc::new(self.cyber.finish()),
            Arc::new(self.departement.finish()),
            Arc::new(self.victim_type.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.loss.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.crosswalk.finish()),
            Arc::new(self.crosswalk_version.finish()),
            Arc::new(self.iccs_from.finish()),
            Arc::new(self.cyber_from.finish()),
        ];
        RecordBatch::try_new(state_schema(), columns).expect("columns match the schema")
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "state table: {0}; the file was not written by this version of the projector, rebuild the projection"
)]
pub struct TableError(String);

impl TableError {
    pub fn new(message: String) -> TableError {
        TableError(message)
    }
}

pub(super) fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, TableError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| TableError(format!("column {name} missing or of the wrong type")))
}

/// The columns of a state batch every reader of it needs (all but the end and reporting
/// dates), typed.
pub(super) struct StateColumns<'a> {
    pub sequence: &'a UInt64Array,
    pub source: &'a StringArray,
    pub id: &'a StringArray,
    pub revision: &'a UInt32Array,
    pub withdrawn: &'a BooleanArray,
    pub record_key: &'a UInt8Array,
    pub occurred_on: &'a Date32Array,
    pub iccs: &'a StringArray,
    pub offence_code: &'a StringArray,
    pub cyber: &'a BooleanArray,
    pub departement: &'a StringArray,
    pub victim_type: &'a StringArray,
    pub channel: &'a StringArray,
    pub loss: &'a Float64Array,
    pub unit: &'a StringArray,
    pub crosswalk: &'a StringArray,
    pub crosswalk_version: &'a UInt32Array,
    pub iccs_from: &'a BooleanArray,
    pub cyber_from: &'a BooleanArray,
}

impl<'a> StateColumns<'a> {
    pub fn of(batch: &'a RecordBatch) -> Result<StateColumns<'a>, TableError> {
        Ok(StateColumns {
            sequence: column(batch, state::SEQUENCE)?,
            source: column(batch, state::SOURCE)?,
            id: column(batch, state::AGENCY_INCIDENT_ID)?,
            revision: column(batch, state::REVISION)?,
            withdrawn: column(batch, state::WITHDRAWN)?,
            record_key: column(batch, state::RECORD_KEY)?,
            occurred_on: column(batch, state::OCCURRED_ON)?,
            iccs: column(batch, state::ICCS)?,
            offence_code: column(batch, state::OFFENCE_CODE)?,
            cyber: column(batch, state::CYBER)?,
            departement: column(batch, state::DEPARTEMENT)?,
            victim_type: column(batch, state::VICTIM_TYPE)?,
            channel: column(batch, state::CHANNEL)?,
            loss: column(batch, state::LOSS_EUR)?,
            unit: column(batch, state::UNIT)?,
            crosswalk: column(batch, state::CROSSWALK)?,
            crosswalk_version: column(batch, state::CROSSWALK_VERSION)?,
            iccs_from: column(batch, state::ICCS_FROM_CROSSWALK)?,
            cyber_from: column(batch, state::CYBER_FROM_CROSSWALK)?,
        })
    }

    pub fn victim_type(&self, i: usize) -> Result<VictimType, TableError> {
        let text = self.victim_type.value(i);
        VictimType::parse(text).ok_or_else(|| TableError(format!("unknown victim_type {text}")))
    }

    pub fn channel(&self, i: usize) -> Result<Channel, TableError> {
        let text = self.channel.value(i);
        Channel::parse(text).ok_or_else(|| TableError(format!("unknown channel {text}")))
    }

    pub fn unit(&self, i: usize) -> Result<Unit, TableError> {
        match self.unit.value(i) {
            "offence" => Ok(Unit::Offence),
            "victim" => Ok(Unit::Victim),
            "report" => Ok(Unit::Report),
            other => Err(TableError(format!("unknown unit {other}"))),
        }
    }
}

/// Decodes state rows written by a [`StateBuilder`], whole.
#[cfg(test)]
pub fn state_rows(batch: &RecordBatch) -> Result<Vec<StateRow>, TableError> {
    let c = StateColumns::of(batch)?;
    let occurred_until = column::<Date32Array>(batch, state::OCCURRED_UNTIL)?;
    let reported_on = column::<Date32Array>(batch, state::REPORTED_ON)?;
    let opt_str = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    (0..batch.num_rows())
        .map(|i| {
            let report = if c.withdrawn.value(i) {
                None
            } else {
                Some(IncidentReported {
                    agency_incident_id: c.id.value(i).to_owned(),
                    revision: c.revision.value(i),
                    occurred_on: from_days(c.occurred_on.value(i)),
                    occurred_until: (!occurred_until.is_null(i))
                        .then(|| from_days(occurred_until.value(i))),
                    reported_on: from_days(reported_on.value(i)),
                    iccs: c.iccs.value(i).to_owned(),
                    offence_code: opt_str(c.offence_code, i),
                    cyber: c.cyber.value(i),
                    departement: opt_str(c.departement, i),
                    victim_type: c.victim_type(i)?,
                    channel: c.channel(i)?,
                    loss_eur: (!c.loss.is_null(i)).then(|| c.loss.value(i)),
                    unit: c.unit(i)?,
                    coding: (!c.crosswalk.is_null(i)).then(|| observatory_model::Coding {
                        crosswalk: c.crosswalk.value(i).to_owned(),
                        version: c.crosswalk_version.value(i),
                        iccs_from_crosswalk: c.iccs_from.value(i),
                        cyber_from_crosswalk: c.cyber_from.value(i),
                    }),
                })
            };
            Ok(StateRow {
                source: c.source.value(i).to_owned(),
                agency_incident_id: c.id.value(i).to_owned(),
                revision: c.revision.value(i),
                sequence: c.sequence.value(i),
                record_key: c.record_key.value(i),
                report,
            })
        })
        .collect()
}

pub fn coverage_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(coverage::SOURCE, DataType::Utf8, false),
        Field::new(coverage::MONTH, DataType::Utf8, false),
        // Null: the whole month is closed for the source, whatever the département.
        Field::new(coverage::DEPARTEMENT, DataType::Utf8, true),
    ]))
}

/// One row per closed (source, month) and listed département, or one row with a null
/// département when the whole month is closed.
pub fn coverage_batch<'a>(
    closures: impl Iterator<Item = (&'a (String, String), &'a Closure)>,
) -> RecordBatch {
    let mut source = StringBuilder::new();
    let mut month = StringBuilder::new();
    let mut departement = StringBuilder::new();
    for ((s, m), closure) in closures {
        match closure {
            None => {
                source.append_value(s);
                month.append_value(m);
                departement.append_null();
            }
            Some(listed) => {
                for d in listed {
                    source.append_value(s);
                    month.append_value(m);
                    departement.append_value(d);
                }
            }
        }
    }
    let columns: Vec<ArrayRef> =
        vec![Arc::new(source.finish()), Arc::new(month.finish()), Arc::new(departement.finish())];
    RecordBatch::try_new(coverage_schema(), columns).expect("columns match the schema")
}

/// (source, month, département or None for all) rows of a coverage batch.
pub fn coverage_rows(
    batch: &RecordBatch,
) -> Result<Vec<(String, String, Option<String>)>, TableError> {
    let source = column::<StringArray>(batch, coverage::SOURCE)?;
    let month = column::<StringArray>(batch, coverage::MONTH)?;
    let departement = column::<StringArray>(batch, coverage::DEPARTEMENT)?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let d = (!departement.is_null(i)).then(|| departement.value(i).to_owned());
            (source.value(i).to_owned(), month.value(i).to_owned(), d)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_model::Event;

    fn state_batch(rows: &[StateRow]) -> RecordBatch {
        let mut builder = StateBuilder::default();
        for row in rows {
            builder.append(
                &row.source,
                &row.agency_incident_id,
                row.revision,
                row.sequence,
                row.record_key,
                row.report.as_ref(),
            );
        }
        builder.finish()
    }

    #[test]
    fn state_rows_round_trip_through_arrow() {
        let keys = observatory_disclosure::RecordKeys::new(&[9; 32]).unwrap();
        let mut fold = Fold::with_crosswalks(&Default::default(), Some(keys.clone())).unwrap();
        let report = IncidentReported {
            agency_incident_id: "PN-1".into(),
            revision: 2,
            occurred_on: NaiveDate::from_ymd_opt(2024, 3, 5).unwrap(),
            occurred_until: Some(NaiveDate::from_ymd_opt(2024, 3, 6).unwrap()),
            reported_on: NaiveDate::from_ymd_opt(2024, 3, 7).unwrap(),
            iccs: "0903".into(),
            offence_code: Some("323-1".into()),
            cyber: true,
            departement: None,
            victim_type: VictimType::Business,
            channel: Channel::Website,
            loss_eur: Some(12.34),
            unit: Unit::Report,
            coding: Some(observatory_model::Coding {
                crosswalk: "platform".into(),
                version: 1,
                iccs_from_crosswalk: true,
                cyber_from_crosswalk: false,
            }),
        };
        fold.apply(7, "pn", Event::IncidentReported(report));
        fold.apply(
            8,
            "gn",
            Event::IncidentWithdrawn(observatory_model::IncidentWithdrawn {
                agency_incident_id: "G".into(),
                revision: 1,
                reason: None,
            }),
        );
        let pending = fold.take_pending().unwrap();
        let rows = state_rows(&pending.changed).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].record_key, keys.key("pn", "PN-1"));
        assert_eq!(rows[1].record_key, keys.key("gn", "G"));
        assert_eq!(state_batch(&rows), pending.changed);
        let counts = counts_batch(&fold, &pending.deltas);
        assert_eq!(counts.num_rows(), 1);
    }

    /// The query reads counts by the layout's names: the dimensions in file order, then the
    /// measures.
    #[test]
    fn counts_columns_are_the_layout_dimensions_then_the_measures() {
        let schema = counts_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut expected = counts::DIMENSIONS.to_vec();
        expected.extend([counts::COUNT, counts::LOSS_CENTS, counts::KEY_SUM]);
        assert_eq!(names, expected);
    }
}
