//! Distribution functions needed for confidence intervals, implemented here so that their
//! accuracy is known and tested against R (`qnorm`, `qt`, `qbeta` to ~1e-13 or better).

mod beta;
mod normal;
mod special;
mod student;

pub use beta::qbeta;
pub use normal::qnorm;
pub use special::{lbeta, lgamma, pbeta};
pub use student::{pt, qt};
