//! `--trials-out FILE.parquet`: every trial of a search as one row (design-notes section 8),
//! streamed as the search runs.
//!
//! Columns: one per space parameter (INT64 for discrete, DOUBLE for continuous, UTF8 for
//! categorical), then `budget` (DOUBLE), `loss` and `sharpe` (optional DOUBLE, null unless the
//! trial ended ok), `status` (UTF8), `trial_id` (INT64), `bracket` and `stage` (optional
//! INT64, null outside bracket searches). Written with parquet's column API, uncompressed, so
//! pandas, polars and DuckDB read it directly.
//!
//! Rows are buffered and written one row group of [`ROW_GROUP`] trials at a time, so memory
//! stays bounded on a 5.4M-point grid. The file grows as a temporary sibling
//! (`FILE.parquet.partial`) and is renamed into place by [`Writer::finish`]; a run that fails
//! or is killed never leaves a half-written `FILE.parquet` (the sibling is removed on error).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use optimize::{ParamKind, Space, TrialSummary, Value};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// The fixed columns after the parameters.
pub(crate) const FIXED: [&str; 7] = ["budget", "loss", "sharpe", "status", "trial_id", "bracket", "stage"];

/// Trials per row group.
pub(crate) const ROW_GROUP: usize = 65_536;

/// One parameter's buffered column.
enum Column {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Text(Vec<ByteArray>),
}

/// The buffered rows of the row group being filled.
#[derive(Default)]
struct Rows {
    budget: Vec<f64>,
    loss: Vec<Option<f64>>,
    status: Vec<&'static str>,
    trial_id: Vec<i64>,
    bracket: Vec<Option<u32>>,
    stage: Vec<Option<u32>>,
}

/// A Parquet file of trials, written as they come.
pub(crate) struct Writer {
    names: Vec<String>,
    params: Vec<Column>,
    rows: Rows,
    writer: Option<SerializedFileWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Writer {
    /// Creates `path`'s temporary sibling with the schema of `space`'s trials.
    pub(crate) fn create(space: &Space, path: &Path) -> Result<Writer> {
        let mut fields = Vec::new();
        let mut params = Vec::new();
        for p in space.params() {
            let (ty, column) = match p.kind {
                ParamKind::Discrete { .. } => ("REQUIRED INT64", Column::Int(Vec::new())),
                ParamKind::Continuous { .. } => ("REQUIRED DOUBLE", Column::Float(Vec::new())),
                ParamKind::Categorical { .. } => ("REQUIRED BYTE_ARRAY", Column::Text(Vec::new())),
            };
            let annotation = if p.is_categorical() { " (UTF8)" } else { "" };
            fields.push(format!("{ty} {}{annotation};", p.name));
            params.push(column);
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
        let file = File::create(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
        let writer = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))?;
        Ok(Writer {
            names: space.params().iter().map(|p| p.name.clone()).collect(),
            params,
            rows: Rows::default(),
            writer: Some(writer),
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Adds one trial; writes a row group when [`ROW_GROUP`] are buffered.
    pub(crate) fn push(&mut self, t: &TrialSummary) -> Result<()> {
        for (name, column) in self.names.iter().zip(&mut self.params) {
            let value = t.config.get(name);
            match column {
                Column::Int(v) => v.push(match value {
                    Some(Value::Int(i)) => *i,
                    Some(Value::Float(x)) => *x as i64,
                    _ => 0,
                }),
                Column::Float(v) => v.push(value.and_then(|v| v.as_f64()).unwrap_or(f64::NAN)),
                Column::Text(v) => v.push(ByteArray::from(value.map_or_else(String::new, |v| v.render()).into_bytes())),
            }
        }
        let r = &mut self.rows;
        r.budget.push(t.budget);
        r.loss.push(t.loss);
        r.status.push(t.status.as_str());
        r.trial_id.push(t.trial_id as i64);
        r.bracket.push(t.bracket);
        r.stage.push(t.stage);
        if r.budget.len() >= ROW_GROUP {
            self.write_group()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn write_group(&mut self) -> Result<()> {
        if self.rows.budget.is_empty() {
            return Ok(());
        }
        let writer = self.writer.as_mut().context("the trials file is closed")?;
        let mut group = writer.next_row_group()?;
        let mut column = 0;
        let n_params = self.params.len();
        let r = &self.rows;
        while let Some(mut col) = group.next_column()? {
            if column < n_params {
                match &self.params[column] {
                    Column::Int(v) => col.typed::<Int64Type>().write_batch(v, None, None)?,
                    Column::Float(v) => col.typed::<DoubleType>().write_batch(v, None, None)?,
                    Column::Text(v) => col.typed::<ByteArrayType>().write_batch(v, None, None)?,
                };
            } else {
                match FIXED[column - n_params] {
                    "budget" => col.typed::<DoubleType>().write_batch(&r.budget, None, None)?,
                    name @ ("loss" | "sharpe") => {
                        let sign = if name == "loss" { 1.0 } else { -1.0 };
                        let def: Vec<i16> = r.loss.iter().map(|l| i16::from(l.is_some())).collect();
                        let v: Vec<f64> = r.loss.iter().filter_map(|l| l.map(|l| sign * l)).collect();
                        col.typed::<DoubleType>().write_batch(&v, Some(&def), None)?
                    }
                    "status" => {
                        let v: Vec<ByteArray> = r.status.iter().map(|s| ByteArray::from(*s)).collect();
                        col.typed::<ByteArrayType>().write_batch(&v, None, None)?
                    }
                    "trial_id" => col.typed::<Int64Type>().write_batch(&r.trial_id, None, None)?,
                    name => {
                        let of = if name == "bracket" { &r.bracket } else { &r.stage };
                        let def: Vec<i16> = of.iter().map(|x| i16::from(x.is_some())).collect();
                        let v: Vec<i64> = of.iter().filter_map(|x| x.map(i64::from)).collect();
                        col.typed::<Int64Type>().write_batch(&v, Some(&def), None)?
                    }
                };
            }
            col.close()?;
            column += 1;
        }
        group.close()?;
        self.rows = Rows::default();
        for c in &mut self.params {
            match c {
                Column::Int(v) => v.clear(),
                Column::Float(v) => v.clear(),
                Column::Text(v) => v.clear(),
            }
        }
        Ok(())
    }

    /// Writes what is buffered, closes the file and moves it into place.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.write_group()?;
        let writer = self.writer.take().context("the trials file is closed")?;
        writer.close()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("failed to move the trials file to {}", self.path.display()))?;
        Ok(())
    }
}

impl Drop for Writer {
    /// A writer dropped before [`Writer::finish`] removes its temporary file.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
