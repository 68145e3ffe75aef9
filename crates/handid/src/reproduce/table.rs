//! Table I's layout with our numbers beside the published ones, as padded Markdown (readable in
//! a terminal, renderable as is).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::published::TABLE_I;
use super::{Backbone, Column, Scenario};

/// The mean scores of one table cell over the Monte Carlo runs, as fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellScores {
    /// CMC rank-1.
    pub rank1: f64,
    /// Interpolated mAP (the published variant).
    pub map_interpolated: f64,
    /// Standard mAP (torchreid, fast-reid).
    pub map_standard: f64,
}

/// Our scores for some rows (scenario x backbone) and columns (datasets) of Table I.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    rows: Vec<(Scenario, Backbone)>,
    columns: Vec<Column>,
    cells: BTreeMap<(Scenario, Backbone, Column), CellScores>,
}

impl Table {
    /// A table of these rows and columns (each kept in the paper's order), without scores.
    pub fn new(scenarios: &[Scenario], backbones: &[Backbone], columns: &[Column]) -> Self {
        let mut rows = Vec::new();
        for backbone in Backbone::ALL.into_iter().filter(|b| backbones.contains(b)) {
            for scenario in Scenario::ALL.into_iter().filter(|s| scenarios.contains(s)) {
                rows.push((scenario, backbone));
            }
        }
        let columns = Column::ALL.into_iter().filter(|c| columns.contains(c)).collect();
        Self { rows, columns, cells: BTreeMap::new() }
    }

    /// Records our scores of one cell.
    pub fn insert(&mut self, scenario: Scenario, backbone: Backbone, column: Column, scores: CellScores) {
        self.cells.insert((scenario, backbone, column), scores);
    }

    /// Our scores of a cell, if it was run.
    pub fn get(&self, scenario: Scenario, backbone: Backbone, column: Column) -> Option<&CellScores> {
        self.cells.get(&(scenario, backbone, column))
    }

    /// Two Markdown tables, numbers in percent with two decimals:
    ///
    /// 1. Table I: the published methods without a CLIP setting (GPA-Net, MBA-Net) for
    ///    reference, then our rows; each cell `ours rank-1 / mAP (published rank-1 / mAP)`, with
    ///    the interpolated mAP the paper reports, and `-` where a side has no number;
    /// 2. the standard mAP of our rows (not published; it differs from the interpolated one
    ///    whenever the first true match is not the top candidate).
    pub fn render(&self) -> String {
        let pct = |v: f64| format!("{:.2}", 100.0 * v);
        let mut main: Vec<Vec<String>> = vec![header(&self.columns)];
        for row in TABLE_I.iter().filter(|r| r.setting.is_none()) {
            let mut line = vec![row.method.to_string()];
            for column in &self.columns {
                let v = row.values[column.index()];
                line.push(format!("- ({:.2} / {:.2})", v.rank1, v.map));
            }
            main.push(line);
        }
        let mut standard: Vec<Vec<String>> = vec![header(&self.columns)];
        for &(scenario, backbone) in &self.rows {
            let mut line = vec![format!("{} {}", scenario.label(), backbone.label())];
            let mut line_standard = line.clone();
            for &column in &self.columns {
                let ours = self.get(scenario, backbone, column);
                let ours_text =
                    ours.map_or("-".to_string(), |s| format!("{} / {}", pct(s.rank1), pct(s.map_interpolated)));
                let published = super::published(scenario, backbone, column)
                    .map_or("-".to_string(), |p| format!("{:.2} / {:.2}", p.rank1, p.map));
                line.push(format!("{ours_text} ({published})"));
                line_standard.push(ours.map_or("-".to_string(), |s| pct(s.map_standard)));
            }
            main.push(line);
            standard.push(line_standard);
        }
        let mut out =
            String::from("Table I: rank-1 / mAP (%), ours (published); mAP = interpolated AP, as published\n\n");
        out.push_str(&markdown(&main));
        out.push_str("\nStandard mAP (%), ours (not published)\n\n");
        out.push_str(&markdown(&standard));
        out
    }
}

fn header(columns: &[Column]) -> Vec<String> {
    std::iter::once("method".to_string()).chain(columns.iter().map(|c| c.label().to_string())).collect()
}

/// A Markdown table with every column padded to its widest cell.
fn markdown(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells = (0..n).map(|c| format!("{:<w$}", row.get(c).map_or("", String::as_str), w = widths[c])).collect();
        out.push_str(&line(cells));
        if i == 0 {
            out.push_str(&format!("|{}|\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")));
        }
    }
    out
}
