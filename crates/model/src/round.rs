//! Measured numbers as JSON shows them: rounded to what was measured, so that a latency
//! reads `0.7` and not `0.7434059999999999`. Only the serialized form is rounded; the values
//! in memory keep their precision.

use serde::Serializer;

fn to(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// One decimal place: milliseconds of the trace, messages a second.
pub fn tenth<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(to(*value, 1))
}

/// [`tenth`] of a value that may be absent.
pub fn tenth_opt<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&to(*v, 1)),
        None => s.serialize_none(),
    }
}

/// Three decimal places: seconds of a run, and the benchmark's latencies in milliseconds.
pub fn thousandth<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(to(*value, 3))
}

/// [`thousandth`] of a value that may be absent.
pub fn thousandth_opt<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&to(*v, 3)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Measured {
        #[serde(serialize_with = "super::tenth")]
        ms: f64,
        #[serde(serialize_with = "super::tenth_opt")]
        maybe: Option<f64>,
        #[serde(serialize_with = "super::thousandth")]
        s: f64,
    }

    #[test]
    fn json_shows_what_was_measured() {
        let m = Measured {
            ms: 0.7434059999999999,
            maybe: Some(704_464.04),
            s: 1.23456789,
        };
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(json, r#"{"ms":0.7,"maybe":704464.0,"s":1.235}"#);
    }
}
