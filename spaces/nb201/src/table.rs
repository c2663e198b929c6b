//! The merged NAS-Bench-201 table (`shared/data/nb201/nb201_merged.csv`, described in
//! `shared/data/SOURCES.md`): one row per cell with its parameter count and accuracies.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use nas_core::{Architecture, NasError, Result};

use crate::arch_str::parse_arch_str;

/// Where the table is looked for when no path is configured, relative to the current
/// directory (the repository root) and then to each folder above the running executable.
pub const DEFAULT_TABLE_PATH: &str = "../shared/data/nb201/nb201_merged.csv";

/// One row of the table. Accuracies are in percent, means over the benchmark's seeds.
/// Column names follow SOURCES.md: `c10valid` = CIFAR-10 trained on its 25k train half,
/// `c10` = CIFAR-10 trained on all 50k; `xvalid` / `xtest` / `oritest` = the split scored;
/// `_12` / `_200` = training epochs.
#[derive(Debug, Clone, PartialEq)]
pub struct Nb201Record {
    /// The benchmark's architecture index (its own, shuffled order).
    pub index: usize,
    /// The cell.
    pub arch: Architecture,
    /// Exact parameter count of the CIFAR-10 network, in millions.
    pub params_m: f64,
    /// `cifar10-valid`, x-valid, 200 epochs.
    pub c10valid_xvalid_200: f64,
    /// `cifar10-valid`, ori-test, 200 epochs.
    pub c10valid_oritest_200: f64,
    /// `cifar10`, ori-test, 200 epochs, NB201 v1.0 file (via NASWOT).
    pub c10_oritest_200_naswot: f64,
    /// `cifar10`, ori-test, 200 epochs, NATS-Bench tss file.
    pub c10_oritest_200: f64,
    /// CIFAR-100, x-test, 200 epochs.
    pub c100_xtest_200: f64,
    /// ImageNet16-120, x-test, 200 epochs.
    pub in16_xtest_200: f64,
    /// `cifar10-valid`, x-valid, 12 epochs: the CIFAR-10 search signal.
    pub c10valid_xvalid_12: f64,
    /// `cifar10`, ori-test, 12 epochs.
    pub c10_oritest_12: f64,
    /// CIFAR-100, x-valid, 12 epochs.
    pub c100_xvalid_12: f64,
    /// CIFAR-100, x-test, 12 epochs.
    pub c100_xtest_12: f64,
    /// ImageNet16-120, x-valid, 12 epochs.
    pub in16_xvalid_12: f64,
    /// ImageNet16-120, x-test, 12 epochs.
    pub in16_xtest_12: f64,
}

/// The accuracy columns, in the order they are stored after `index, arch_str,
/// params_cifar10_M`.
const ACC_COLUMNS: [&str; 12] = [
    "c10valid_xvalid_200",
    "c10valid_oritest_200",
    "c10_oritest_200_naswot",
    "c10_oritest_200",
    "c100_xtest_200",
    "in16_xtest_200",
    "c10valid_xvalid_12",
    "c10_oritest_12",
    "c100_xvalid_12",
    "c100_xtest_12",
    "in16_xvalid_12",
    "in16_xtest_12",
];

/// The loaded table, with lookups by architecture and by benchmark index.
#[derive(Debug)]
pub struct Nb201Table {
    source: String,
    records: Vec<Nb201Record>,
    by_choices: HashMap<Vec<usize>, usize>,
    by_index: HashMap<usize, usize>,
}

impl Nb201Table {
    /// Reads the table at `path`. A missing file or a corrupt row is a
    /// [`NasError::Data`] naming the file (and the line).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| {
            NasError::data(path, format!("cannot open the NAS-Bench-201 table: {e}"))
        })?;
        Self::from_reader(&path.display().to_string(), std::io::BufReader::new(file))
    }

    /// Reads a table from `reader`; `source` names it in errors.
    pub fn from_reader(source: &str, reader: impl Read) -> Result<Self> {
        let bad = |message: String| NasError::Data {
            file: source.to_string(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let headers = rdr
            .headers()
            .map_err(|e| bad(format!("cannot read the header: {e}")))?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| bad(format!("the header has no column `{name}`")))
        };
        let i_index = col("index")?;
        let i_arch = col("arch_str")?;
        let i_params = col("params_cifar10_M")?;
        let i_acc = ACC_COLUMNS
            .iter()
            .map(|c| col(c))
            .collect::<Result<Vec<_>>>()?;

        let mut table = Nb201Table {
            source: source.to_string(),
            records: Vec::with_capacity(15_625),
            by_choices: HashMap::with_capacity(15_625),
            by_index: HashMap::with_capacity(15_625),
        };
        let mut lines: Vec<u64> = Vec::with_capacity(15_625);
        for rec in rdr.records() {
            let rec = rec.map_err(|e| bad(format!("malformed CSV: {e}")))?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let at = |message: String| bad(format!("line {line}: {message}"));
            let field = |i: usize, name: &str| {
                rec.get(i)
                    .map(str::trim)
                    .ok_or_else(|| at(format!("missing column `{name}`")))
            };
            let index: usize = field(i_index, "index")?
                .parse()
                .map_err(|e| at(format!("column `index`: {e}")))?;
            let arch = parse_arch_str(field(i_arch, "arch_str")?).map_err(|e| at(e.to_string()))?;
            let number = |i: usize, name: &str, lo: f64, hi: f64| -> Result<f64> {
                let text = field(i, name)?;
                let v: f64 = text
                    .parse()
                    .map_err(|_| at(format!("column `{name}`: `{text}` is not a number")))?;
                if !(v.is_finite() && (lo..=hi).contains(&v)) {
                    return Err(at(format!("column `{name}`: {v} is outside [{lo}, {hi}]")));
                }
                Ok(v)
            };
            let params_m = number(i_params, "params_cifar10_M", f64::MIN_POSITIVE, 1e3)?;
            let mut acc = [0.0; 12];
            for (k, (&i, name)) in i_acc.iter().zip(ACC_COLUMNS).enumerate() {
                acc[k] = number(i, name, 0.0, 100.0)?;
            }
            let row = table.records.len();
            if let Some(&other) = table.by_choices.get(&arch.choices) {
                return Err(at(format!(
                    "architecture repeats the one on line {}",
                    lines[other]
                )));
            }
            if let Some(&other) = table.by_index.get(&index) {
                return Err(at(format!(
                    "index {index} repeats the one on line {}",
                    lines[other]
                )));
            }
            table.by_choices.insert(arch.choices.clone(), row);
            table.by_index.insert(index, row);
            lines.push(line);
            table.records.push(Nb201Record {
                index,
                arch,
                params_m,
                c10valid_xvalid_200: acc[0],
                c10valid_oritest_200: acc[1],
                c10_oritest_200_naswot: acc[2],
                c10_oritest_200: acc[3],
                c100_xtest_200: acc[4],
                in16_xtest_200: acc[5],
                c10valid_xvalid_12: acc[6],
                c10_oritest_12: acc[7],
                c100_xvalid_12: acc[8],
                c100_xtest_12: acc[9],
                in16_xvalid_12: acc[10],
                in16_xtest_12: acc[11],
            });
        }
        if table.records.is_empty() {
            return Err(bad("the table has no rows".into()));
        }
        Ok(table)
    }

    /// Loads the table at `path` once per process and shares it (keyed by the canonical
    /// path): a sweep with many runs reads the 3.4 MB file once. Later edits of the file
    /// are not seen by this process.
    pub fn load_shared(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Nb201Table>>>> = OnceLock::new();
        let path = path.as_ref();
        let key = path.canonicalize().map_err(|e| {
            NasError::data(path, format!("cannot open the NAS-Bench-201 table: {e}"))
        })?;
        let cache = CACHE.get_or_init(Default::default);
        if let Some(t) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(t);
        }
        let table = Arc::new(Self::load(path)?);
        if let Ok(mut c) = cache.lock() {
            c.insert(key, Arc::clone(&table));
        }
        Ok(table)
    }

    /// Resolves the table's location. A configured `path` is used as given (relative to
    /// the current directory); without one, [`DEFAULT_TABLE_PATH`] is tried relative to
    /// the current directory, then relative to every folder above the running executable
    /// (so tests and binaries under `target/` find the repository's `../shared`).
    /// The error names every path tried.
    pub fn locate(path: Option<&str>) -> Result<PathBuf> {
        if let Some(p) = path {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return Err(NasError::data(
                &p,
                format!("NAS-Bench-201 table not found (current directory {cwd})"),
            ));
        }
        let mut tried: Vec<PathBuf> = vec![PathBuf::from(DEFAULT_TABLE_PATH)];
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1) {
                let p = dir.join(DEFAULT_TABLE_PATH);
                if !tried.contains(&p) {
                    tried.push(p);
                }
            }
        }
        if let Some(found) = tried.iter().find(|p| p.is_file()) {
            return Ok(found.clone());
        }
        let list = tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(NasError::data(
            DEFAULT_TABLE_PATH,
            format!("NAS-Bench-201 table not found; tried {list}; set the estimator's `path`"),
        ))
    }

    /// Where the table was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the table has no rows (never, for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All rows, in file order.
    pub fn records(&self) -> &[Nb201Record] {
        &self.records
    }

    /// The row of `arch` (compared by its choices).
    pub fn get(&self, arch: &Architecture) -> Option<&Nb201Record> {
        self.by_choices
            .get(&arch.choices)
            .map(|&r| &self.records[r])
    }

    /// The row with benchmark index `index`.
    pub fn by_index(&self, index: usize) -> Option<&Nb201Record> {
        self.by_index.get(&index).map(|&r| &self.records[r])
    }

    /// The benchmark index of `arch`.
    pub fn index_of(&self, arch: &Architecture) -> Option<usize> {
        self.get(arch).map(|r| r.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "index,arch_str,params_cifar10_M,c10valid_xvalid_200,c10valid_oritest_200,c10_oritest_200_naswot,c10_oritest_200,c100_xtest_200,in16_xtest_200,c10valid_xvalid_12,c10_oritest_12,c100_xvalid_12,c100_xtest_12,in16_xvalid_12,in16_xtest_12\n";
    const ROW0: &str = "0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|,0.129306,81.982667,81.520000,85.863333,85.863333,52.913333,26.633333,63.364000,69.550000,31.840000,31.260000,18.466667,17.000000\n";
    const ROW1: &str = "1,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|,0.802426,90.769333,90.513333,93.660000,93.660000,70.293333,44.033333,82.834000,88.220000,57.800000,58.260000,35.433333,33.800000\n";

    fn read(text: &str) -> Result<Nb201Table> {
        Nb201Table::from_reader("mem.csv", text.as_bytes())
    }

    #[test]
    fn reads_rows_and_looks_them_up() {
        let t = read(&format!("{HEADER}{ROW0}{ROW1}")).unwrap();
        assert_eq!(t.len(), 2);
        let a = Architecture::new("nb201", vec![3, 3, 4, 1, 3, 1]);
        let r = t.get(&a).unwrap();
        assert_eq!(r.index, 1);
        assert_eq!(r.c10_oritest_200, 93.66);
        assert_eq!(r.c10valid_xvalid_12, 82.834);
        assert_eq!(r.in16_xtest_12, 33.8);
        assert_eq!(t.by_index(0).unwrap().arch.choices, vec![4, 2, 1, 2, 1, 1]);
        assert_eq!(t.index_of(&Architecture::new("nb201", vec![0; 6])), None);
    }

    #[test]
    fn corrupt_rows_name_the_line() {
        let bad_number = ROW1.replace("93.660000,93.660000", "93.660000,abc");
        let e = read(&format!("{HEADER}{ROW0}{bad_number}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mem.csv") && e.contains("line 3") && e.contains("`abc`"),
            "{e}"
        );

        let bad_arch = ROW0.replace("avg_pool_3x3~0", "pool~0");
        let e = read(&format!("{HEADER}{bad_arch}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("unknown operation `pool`"),
            "{e}"
        );

        let e = read(&format!("{HEADER}{ROW0}{ROW0}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("line 2"), "{e}");

        let e = read(&format!(
            "{HEADER}{}",
            ROW0.replace("85.863333,52", "185.8,52")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("outside"), "{e}");

        let e = read(&format!("{HEADER}0,|none~0|\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mem.csv"), "{e}");

        let e = read(&HEADER.replace("in16_xtest_12", "x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column `in16_xtest_12`"), "{e}");

        let e = read(HEADER).unwrap_err().to_string();
        assert!(e.contains("no rows"), "{e}");
    }

    #[test]
    fn missing_file_is_a_data_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.csv");
        let e = Nb201Table::load(&p).unwrap_err();
        assert!(matches!(e, NasError::Data { .. }));
        assert!(e.to_string().contains("nope.csv"), "{e}");
        let e = Nb201Table::locate(Some(&p.display().to_string())).unwrap_err();
        assert!(e.to_string().contains("nope.csv"), "{e}");
        assert!(Nb201Table::load_shared(&p).is_err());
    }
}
