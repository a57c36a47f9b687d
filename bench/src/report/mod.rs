//! Turning [`Results`](crate::results::Results) into `results.md` (Markdown
//! tables with ratios and the target checks) and SVG charts.

pub mod markdown;
pub mod svg;
pub mod targets;
