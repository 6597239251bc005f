//! The `data` statement: which data set, where its files are, the hold-out and augmentations.

use super::reader::{self as r, check_block_use, Args, Sink};
use crate::diagnostics::Diagnostic;
use crate::ir::plan::*;
use crate::syntax::ast::{Statement, Value};

pub const DATASETS: &[&str] = &["mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic_digits", "idx"];

pub fn data(sink: &mut Sink, s: &Statement) -> Option<DataSpec> {
    check_block_use(sink, s, false);
    let mut outer = Args::of_statement(sink, s);
    let v = outer.require(sink, 0, "dataset", "data mnist(val: 5000)")?;
    outer.finish(sink, &["dataset"]);
    let (name, mut a) = r::variant(sink, v, "dataset", DATASETS)?;
    let path = a.named("path").and_then(|v| r::string(sink, v)).map(str::to_string);
    let val = a.named("val").map_or(Some(0), |v| r::int(sink, v, "val", 0, 10_000_000));
    let augment = a.named("augment").map_or(Some(vec![]), |v| augments(sink, v));
    let mut files = |a: &mut Args, k: &str| {
        a.require(sink, usize::MAX, k, "idx(train_images: \"...\", ...)")
            .and_then(|v| r::string(sink, v))
            .map(str::to_string)
    };
    let dataset = match name {
        "mnist" => Some(Dataset::Mnist),
        "fashion_mnist" => Some(Dataset::FashionMnist),
        "cifar10" => Some(Dataset::Cifar10),
        "cifar100" => Some(Dataset::Cifar100),
        "synthetic_digits" => {
            let train = a.named("train").map_or(Some(6000), |v| r::int(sink, v, "train", 10, 1_000_000));
            let test = a.named("test").map_or(Some(1000), |v| r::int(sink, v, "test", 10, 1_000_000));
            (|| Some(Dataset::SyntheticDigits { train: train? as usize, test: test? as usize }))()
        }
        _ => {
            let ti = files(&mut a, "train_images");
            let tl = files(&mut a, "train_labels");
            let si = files(&mut a, "test_images");
            let sl = files(&mut a, "test_labels");
            (|| Some(Dataset::Idx { train_images: ti?, train_labels: tl?, test_images: si?, test_labels: sl? }))()
        }
    };
    let known: &[&str] = match name {
        "synthetic_digits" => &["train", "test", "val", "augment"],
        "idx" => &["train_images", "train_labels", "test_images", "test_labels", "val", "augment"],
        _ => &["path", "val", "augment"],
    };
    a.finish(sink, known);
    if let (Some(Dataset::SyntheticDigits { train, .. }), Some(val)) = (&dataset, val) {
        if val as usize >= *train {
            sink.push(
                Diagnostic::error("E0204", format!("`val: {val}` leaves no training data out of {train}"))
                    .at(v.span, "hold-out too large")
                    .with_help("hold out fewer examples than the training split has"),
            );
        }
    }
    Some(DataSpec { dataset: dataset?, path, val: val? as usize, augment: augment?, span: s.span })
}

fn augments(sink: &mut Sink, v: &Value) -> Option<Vec<Augment>> {
    let mut out = Vec::new();
    for item in r::list(sink, v)? {
        let (name, mut a) = r::variant(sink, item, "augmentation", &["crop", "flip"])?;
        match name {
            "crop" => {
                let size =
                    a.require(sink, 0, "size", "crop(32, pad: 4)").and_then(|v| r::int(sink, v, "crop size", 1, 4096));
                let pad = a.named("pad").map_or(Some(0), |v| r::int(sink, v, "pad", 0, 64));
                a.finish(sink, &["size", "pad"]);
                out.push(Augment::Crop { size: size? as usize, pad: pad? as usize });
            }
            _ => {
                a.finish(sink, &[]);
                out.push(Augment::Flip);
            }
        }
    }
    Some(out)
}
