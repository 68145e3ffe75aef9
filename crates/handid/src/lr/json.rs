//! JSON for a number that may be infinite: finite values are numbers, `+-inf` and NaN are the
//! strings `"inf"`, `"-inf"` and `"nan"` (the convention of FIXTURES.md section 5).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
}

fn to_repr(v: f64) -> Repr {
    if v.is_finite() {
        Repr::Number(v)
    } else if v.is_nan() {
        Repr::Text("nan".into())
    } else if v > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Number(v) => Ok(v),
        Repr::Text(s) => match s.as_str() {
            "inf" | "Infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            "nan" | "NaN" => Ok(f64::NAN),
            other => Err(E::custom(format!("{other:?} is not a number"))),
        },
    }
}

/// One `f64` that may be infinite.
pub(crate) mod ext {
    use super::*;

    /// Serialises `v`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        to_repr(*v).serialize(s)
    }

    /// Deserialises a number or one of the strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super::ext")]
        a: f64,
        #[serde(with = "super::ext")]
        b: f64,
    }

    #[test]
    fn infinities_round_trip() {
        let t = T { a: f64::NEG_INFINITY, b: 1.5 };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"a":"-inf","b":1.5}"#);
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"a":"x","b":1}"#).is_err());
    }
}
