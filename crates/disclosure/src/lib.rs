//! Statistical disclosure control for published counts, pure (no IO): the cell-key method as the
//! ONS, ABS and Destatis use it (see `shared` research notes, section 4.1).
//!
//! - [`keys`]: a record key in 0..=255 per incident, a keyed hash of its stable identity under a
//!   deployment secret, and a cell key = the sum of its records' keys modulo 256, so the same set
//!   of records gets the same noise whatever query reaches it.
//! - [`ptable`]: the perturbation table (maximum |noise| `D`, variance at most `V`, no published
//!   value in `1..=js`), built by maximum entropy with zero mean per original value, as the
//!   `ptable` R package does, and the lookup that turns (count, cell key) into a published count.

//! - [`policy`]: the public tier's policy: the shipped table (versioned data) and the thresholds
//!   for losses and survey domains, with the reasons for each default.

#[cfg(test)]
mod fuzz;
pub mod keys;
pub mod policy;
pub mod ptable;

pub use keys::{CELL_KEYS, MIN_SECRET_BYTES, RecordKeys, WeakSecret, cell_key, record_key};
pub use policy::{Parameters, Policy, round_significant};
pub use ptable::{PTable, PTableError, PTableParams, PTableRow, Relaxation};
