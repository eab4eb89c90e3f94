//! The `#[video_model(...)]` spec whose shapes match a TF checkpoint of the paper's or
//! the starter code's models (`loupe import --print-spec`).

use super::bundle::TfCheckpoint;
use super::mapping::Convention;

/// The spec of the model `ckpt` holds, named `name`, or why it cannot be told. Sizes come
/// from the variables' shapes; what a checkpoint does not record (frames sampled per
/// video, the classifier's L2 coefficient, the streams' names) is given the released
/// code's defaults and said so in a comment.
pub fn infer_spec(ckpt: &TfCheckpoint, name: &str) -> Result<String, String> {
    let shape = |n: &str| ckpt.entry(n).map(|e| e.shape.clone());
    let names: Vec<&str> = ckpt.entries().map(|e| e.name.as_str()).collect();
    let convention = Convention::detect(names.iter().copied());
    let prefix = if convention == Convention::Starter { "tower/" } else { "" };
    let mut lines = Vec::new();
    let (classifier, classes, input_size) = if let (Some(g), Some(e)) =
        (shape(&format!("{prefix}gates/weights")), shape(&format!("{prefix}experts/weights")))
    {
        let (inputs, gate_cols, expert_cols) = (g[0], g[1], e.get(1).copied().unwrap_or(0));
        let classes = gate_cols.checked_sub(expert_cols).filter(|&c| c > 0 && expert_cols % c == 0);
        let Some(classes) = classes else {
            return Err(format!("MoE gates {g:?} and experts {e:?} do not agree on a class count"));
        };
        (format!("moe(experts = {})", expert_cols / classes), classes, inputs)
    } else if let Some(w) = shape(&format!("{prefix}fully_connected/weights")) {
        ("logistic".to_string(), w[1], w[0])
    } else {
        return Err(
            "no classifier found (`gates/weights` + `experts/weights`, or `fully_connected/weights`)"
                .to_string(),
        );
    };
    let pooled_streams: Vec<(String, &str)> = ["video", "audio"]
        .iter()
        .filter_map(|side| {
            ["VLAD", "FV", "DBOF"].iter().find_map(|kind| {
                let w = shape(&format!("{side}_{kind}/cluster_weights"))?;
                let pooling = match *kind {
                    "VLAD" if shape(&format!("{side}_{kind}/cluster_weights2")).is_some() => "netvlad",
                    "VLAD" => "netrvlad",
                    "FV" => "netfv",
                    _ => "soft_bow",
                };
                let stream = if *side == "video" { "rgb" } else { "audio" };
                Some((
                    format!("{stream}(features = {}, pooling = {pooling}(clusters = {}))", w[0], w[1]),
                    *side,
                ))
            })
        })
        .collect();
    lines.push("#[video_model(".to_string());
    if pooled_streams.is_empty() {
        lines.push("    input = video_level,".to_string());
        let streams = if input_size > 1024 {
            format!("mean_rgb(features = 1024), mean_audio(features = {})", input_size - 1024)
        } else {
            format!("mean_rgb(features = {input_size})")
        };
        lines.push(format!("    streams = [{streams}], // the sizes' split is not in the checkpoint"));
    } else {
        lines.push("    frames = 300, // --iterations of the run: not in the checkpoint".to_string());
        lines.push("    streams = [".to_string());
        for (s, _) in &pooled_streams {
            lines.push(format!("        {s},"));
        }
        lines.push("    ],".to_string());
    }
    if let Some(h) = shape(&format!("{prefix}hidden1_weights")) {
        if shape(&format!("{prefix}hidden1_bn/gamma")).is_some() {
            lines.push(format!("    hidden = fc(size = {}, batch_norm = true, relu6 = true),", h[1]));
        } else {
            lines.push(format!("    hidden = {},", h[1]));
        }
    }
    if shape(&format!("{prefix}gating_weights_2")).is_some() {
        lines.push("    after_pooling = context_gating,".to_string());
    }
    lines.push(format!(
        "    classifier = {classifier}, // add `l2 = ...` as trained (--moe_l2); not in the checkpoint"
    ));
    if shape(&format!("{prefix}gating_prob_weights")).is_some() {
        lines.push("    after_classifier = context_gating,".to_string());
    }
    lines.push(format!("    classes = {classes},"));
    lines.push(")]".to_string());
    lines.push(format!("pub struct {name};"));
    Ok(lines.join("\n"))
}
