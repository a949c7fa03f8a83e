//! `--trials-out FILE.parquet`: every trial of a search as one row (design-notes section 8).
//!
//! Columns: one per space parameter (INT64 for discrete, DOUBLE for continuous, UTF8 for
//! categorical), then `budget` (DOUBLE), `loss` and `sharpe` (optional DOUBLE, null unless the
//! trial ended ok), `status` (UTF8), `trial_id` (INT64), `bracket` and `stage` (optional
//! INT64, null outside bracket searches). Written with parquet's column API, uncompressed, so
//! pandas, polars and DuckDB read it directly. The file is written to a temporary sibling and
//! renamed into place, so a failed run never leaves half a file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use optimize::{ParamKind, Space, TrialSummary, Value};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// The fixed columns after the parameters.
pub(crate) const FIXED: [&str; 7] = ["budget", "loss", "sharpe", "status", "trial_id", "bracket", "stage"];

/// Writes `trials` (in the order given) to `path`.
pub(crate) fn write(space: &Space, trials: &[TrialSummary], path: &Path) -> Result<()> {
    let mut fields = Vec::new();
    for p in space.params() {
        let ty = match p.kind {
            ParamKind::Discrete { .. } => "REQUIRED INT64",
            ParamKind::Continuous { .. } => "REQUIRED DOUBLE",
            ParamKind::Categorical { .. } => "REQUIRED BYTE_ARRAY",
        };
        let annotation = if p.is_categorical() { " (UTF8)" } else { "" };
        fields.push(format!("{ty} {}{annotation};", p.name));
    }
    fields.extend(
        [
            "REQUIRED DOUBLE budget;",
            "OPTIONAL DOUBLE loss;",
            "OPTIONAL DOUBLE sharpe;",
            "REQUIRED BYTE_ARRAY status (UTF8);",
            "REQUIRED INT64 trial_id;",
            "OPTIONAL INT64 bracket;",
            "OPTIONAL INT64 stage;",
        ]
        .map(String::from),
    );
    let schema = Arc::new(parse_message_type(&format!("message trials {{ {} }}", fields.join(" ")))?);
    let tmp = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))?;
    let mut group = writer.next_row_group()?;
    let n_params = space.params().len();
    let mut column = 0;
    while let Some(mut col) = group.next_column()? {
        if column < n_params {
            let name = &space.params()[column].name;
            let value = |t: &TrialSummary| t.config.get(name).cloned();
            match space.params()[column].kind {
                ParamKind::Discrete { .. } => {
                    let v: Vec<i64> = trials.iter().map(|t| as_i64(value(t))).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                ParamKind::Continuous { .. } => {
                    let v: Vec<f64> =
                        trials.iter().map(|t| value(t).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)).collect();
                    col.typed::<DoubleType>().write_batch(&v, None, None)?;
                }
                ParamKind::Categorical { .. } => {
                    let v: Vec<ByteArray> = trials
                        .iter()
                        .map(|t| ByteArray::from(value(t).map_or_else(String::new, |v| v.render()).into_bytes()))
                        .collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
            }
        } else {
            match FIXED[column - n_params] {
                "budget" => {
                    let v: Vec<f64> = trials.iter().map(|t| t.budget).collect();
                    col.typed::<DoubleType>().write_batch(&v, None, None)?;
                }
                name @ ("loss" | "sharpe") => {
                    let sign = if name == "loss" { 1.0 } else { -1.0 };
                    let def: Vec<i16> = trials.iter().map(|t| i16::from(t.loss.is_some())).collect();
                    let v: Vec<f64> = trials.iter().filter_map(|t| t.loss.map(|l| sign * l)).collect();
                    col.typed::<DoubleType>().write_batch(&v, Some(&def), None)?;
                }
                "status" => {
                    let v: Vec<ByteArray> = trials.iter().map(|t| ByteArray::from(t.status.as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
                "trial_id" => {
                    let v: Vec<i64> = trials.iter().map(|t| t.trial_id as i64).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                name => {
                    let of = |t: &TrialSummary| if name == "bracket" { t.bracket } else { t.stage };
                    let def: Vec<i16> = trials.iter().map(|t| i16::from(of(t).is_some())).collect();
                    let v: Vec<i64> = trials.iter().filter_map(|t| of(t).map(i64::from)).collect();
                    col.typed::<Int64Type>().write_batch(&v, Some(&def), None)?;
                }
            }
        }
        col.close()?;
        column += 1;
    }
    group.close()?;
    writer.close()?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to move the trials file to {}", path.display()))?;
    Ok(())
}

fn as_i64(v: Option<Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => i,
        Some(Value::Float(x)) => x as i64,
        _ => 0,
    }
}
