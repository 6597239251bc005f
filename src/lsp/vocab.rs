//! The language's vocabulary as the editor offers it: which statements each block takes, the
//! values each statement accepts, the arguments of each call, and their reference entries
//! (taken from `docs/reference.md`, so hover shows what the reference says). A test
//! (`tests/lsp_vocab.rs`) compiles every entry to keep this table in step with the checker.

use crate::check;

/// Statement keywords by enclosing block (`""` = the top level of a file), from the checker's own
/// lists.
pub const BLOCKS: &[(&str, &[&str])] = &[
    ("", &["use", "kernel", "recipe", "sweep"]),
    ("recipe", check::RECIPE_KEYS),
    ("init", check::INIT_KEYS),
    ("sparsity", check::SPARSITY_KEYS),
    ("techniques", crate::ir::names::TECHNIQUE_NAMES),
    ("train", check::TRAIN_KEYS),
    ("output", check::OUTPUT_KEYS),
    ("sweep", check::SWEEP_KEYS),
    ("model", LAYERS),
    ("residual", LAYERS),
    ("shortcut", LAYERS),
];

pub const LAYERS: &[&str] = check::LAYER_KEYWORDS;

pub const ZOO: &[&str] = check::ZOO;

/// The named values a statement accepts as its first argument, by `block.statement`.
pub const VALUES: &[(&str, &[&str])] = &[
    ("recipe.data", &["mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic_digits", "idx"]),
    ("recipe.model", ZOO),
    ("sparsity.distribution", &["uniform", "erk", "global"]),
    ("sparsity.dense", &["first", "last", "batchnorm", "bias"]),
    ("sparsity.mask", check::MASKS),
    (
        "init.weights",
        &["pytorch", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "orthogonal", "normal"],
    ),
    ("init.bias", &["pytorch", "zeros", "normal"]),
    ("init.sparse", &["true", "false"]),
    ("sparsity.schedule", &["constant", "linear", "cubic", "cyclic"]),
    ("sparsity.update", &["hard", "soft_threshold", "prune_regrow"]),
    ("sparsity.freeze", &["at"]),
    ("train.optimizer", &["sgd", "adam", "adamw"]),
    ("train.lr", &["constant", "cosine", "step"]),
    ("train.loss", &["cross_entropy"]),
    ("output.plots", &["true", "false"]),
];

/// Argument names of calls and statements, by name (a call's name or a statement keyword).
pub const ARGS: &[(&str, &[&str])] = &[
    ("mnist", &["path", "val", "augment"]),
    ("fashion_mnist", &["path", "val", "augment"]),
    ("cifar10", &["path", "val", "augment"]),
    ("cifar100", &["path", "val", "augment"]),
    ("synthetic_digits", &["train", "test", "val", "augment"]),
    ("idx", &["train_images", "train_labels", "test_images", "test_labels", "val", "augment"]),
    ("crop", &["pad"]),
    ("kaiming_normal", &["mode", "nonlinearity", "a"]),
    ("kaiming_uniform", &["mode", "nonlinearity", "a"]),
    ("xavier_normal", &["gain"]),
    ("xavier_uniform", &["gain"]),
    ("orthogonal", &["gain"]),
    ("normal", &["std"]),
    ("not_learning", &["after", "action"]),
    ("snip", &["batches"]),
    ("grasp", &["temperature", "batches"]),
    ("synflow", &["rounds"]),
    ("lottery", &["rounds", "rate", "rewind"]),
    ("linear", &["start", "end", "every"]),
    ("cubic", &["start", "end", "every"]),
    ("cyclic", &["cycles", "length", "peak", "shape"]),
    ("soft_threshold", &["ste", "rescale", "scope", "sigma", "kernel"]),
    ("prune_regrow", &["every", "drop", "grow", "until"]),
    ("ghost_neurons", &["activation", "until", "blend"]),
    ("ghost_skip", &["init", "fade"]),
    ("label_smoothing", &["style"]),
    ("gradinit", &["iters", "lr", "eta", "min_scale"]),
    ("dyrelu", &["phase_out", "reduction"]),
    ("weight_sharing", &["from_block"]),
    ("sgd", &["lr", "momentum", "nesterov", "weight_decay"]),
    ("adam", &["lr", "beta1", "beta2", "eps", "weight_decay"]),
    ("adamw", &["lr", "beta1", "beta2", "eps", "weight_decay"]),
    ("cosine", &["warmup"]),
    ("step", &["at", "factor"]),
    ("conv", &["kernel", "stride", "padding", "bias", "groups", "name"]),
    ("dense", &["bias", "name"]),
    ("maxpool", &["stride", "name"]),
    ("avgpool", &["stride", "name"]),
    ("checkpoint", &["every", "keep"]),
    ("lenet300_100", &["width", "classes"]),
    ("lenet5_caffe", &["width", "classes"]),
    ("vgg16", &["width", "classes"]),
    ("resnet20", &["width", "classes"]),
    ("resnet32", &["width", "classes"]),
    ("resnet56", &["width", "classes"]),
    ("resnet18", &["width", "classes"]),
    ("resnet34", &["width", "classes"]),
    ("resnet50", &["width", "classes"]),
    ("mobilenet_v1", &["width", "classes"]),
];

/// Values of named arguments that take a name.
pub const ARG_VALUES: &[(&str, &[&str])] = &[
    ("ste", &["dense", "masked"]),
    ("scope", &["global", "layer"]),
    ("grow", &["gradient", "random"]),
    ("shape", &["cosine", "triangular"]),
    ("activation", &["swish", "mish", "gelu"]),
    ("style", &["uniform", "others"]),
    ("rescale", &["true", "false"]),
    ("sigma", &["true", "false"]),
    ("nesterov", &["true", "false"]),
    ("bias", &["true", "false"]),
];

pub const ITEM_DOCS: &[(&str, &str)] = &[
    ("use", "`use \"FILE\"`: the recipes and kernels of another file, path relative to this one."),
    ("kernel", "`kernel NAME(ARRAYS; SCALARS) = EXPR`: an elementwise `f32` kernel, JIT-compiled."),
    ("recipe", "`recipe NAME [extends PARENT] { ... }`: a training run."),
    (
        "extends",
        "`recipe NAME extends PARENT { ... }`: start from PARENT; a statement replaces the parent's \
         statement with the same keyword in the same block (`layer \"NAME\"` by layer name); the \
         `sparsity`, `techniques`, `train` and `output` blocks merge.",
    ),
    ("sweep", "`sweep NAME { recipes [A, B]; vary FIELD [V1, V2]; seeds [0, 1, 2]; report \"name\" }`: the grid recipes x values x seeds."),
];

pub fn lookup<'a>(table: &'a [(&str, &'a [&'a str])], key: &str) -> &'a [&'a str] {
    table.iter().find(|(k, _)| *k == key).map_or(&[], |(_, v)| v)
}

const REFERENCE: &str = include_str!("../../docs/reference.md");

/// The reference entries for a word: table rows whose first cell names it (preferring the
/// section of `block`), or the paragraph of `### model` for a zoo name.
pub fn reference(word: &str, block: &str) -> Option<String> {
    if let Some((_, doc)) = ITEM_DOCS.iter().find(|(k, _)| *k == word) {
        return Some(doc.to_string());
    }
    let mut section = "";
    let mut best: Option<(bool, String)> = None;
    let mut header: Option<&str> = None;
    for line in REFERENCE.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            section = h.trim();
            header = None;
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim();
            header = None;
            continue;
        }
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        if header.is_none() {
            header = Some(line);
            continue;
        }
        if line.starts_with("|---") {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("");
        if names_word(first, word) {
            let in_block = section == block;
            if best.as_ref().is_none_or(|(b, _)| !b && in_block) {
                let head = header.unwrap_or("");
                let rule = "|---".repeat(head.matches('|').count().saturating_sub(1)) + "|";
                best = Some((in_block, format!("{head}\n{rule}\n{line}")));
            }
        }
    }
    if let Some((_, row)) = best {
        return Some(row);
    }
    if ZOO.contains(&word) {
        let para = REFERENCE.split("\n\n").find(|p| p.starts_with("Zoo:"))?;
        return Some(para.to_string());
    }
    None
}

/// Whether a table cell names `word` in code: `` `word` ``, `` `word ...` `` or `` `word(` ``.
fn names_word(cell: &str, word: &str) -> bool {
    cell.split('`').skip(1).step_by(2).any(|code| {
        let head = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
        head == word
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rows_are_found_for_keywords_and_values() {
        let mask = reference("mask", "sparsity").unwrap();
        assert!(mask.contains("snip(batches: 1)"), "{mask}");
        assert!(mask.starts_with("| statement | values (defaults) |\n|---|---|\n"), "{mask}");
        let block = reference("sparsity", "recipe").unwrap();
        assert!(block.starts_with("| statement | required | default |\n|---|---|---|\n"), "{block}");
        assert!(reference("epochs", "train").unwrap().contains("required"));
        assert!(reference("conv", "model").unwrap().contains("stride: 1"));
        assert!(reference("resnet20", "recipe").unwrap().contains("CIFAR ResNets"));
        assert!(reference("ghost_skip", "techniques").unwrap().contains("fade"));
        assert!(reference("no_such_word", "").is_none());
    }
}
