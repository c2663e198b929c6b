//! Building optimizers by name from an untyped `params` block, and their documentation.
use nas_core::{decode_params, ComponentInfo, ComponentKind, NasError, ParamDoc, Result};
use serde::Serialize;

use crate::{
    Adam, AdamParams, AdamW, AdamWParams, Optimizer, RmsProp, RmsPropParams, Sgd, SgdParams,
};

/// Names accepted by [`build_optimizer`], sorted.
pub const OPTIMIZER_NAMES: [&str; 4] = ["adam", "adamw", "rmsprop", "sgd"];

/// Builds the optimizer `name` (`sgd`, `adam`, `adamw`, `rmsprop`) from its `params` block
/// (`null` or missing keys take the defaults). Unknown keys and out-of-range values are
/// [`NasError::InvalidParams`] naming the key; an unknown name is
/// [`NasError::UnknownComponent`].
pub fn build_optimizer(name: &str, params: &serde_json::Value) -> Result<Box<dyn Optimizer>> {
    let component = format!("optimizer {name}");
    Ok(match name {
        "sgd" => Box::new(Sgd::new(decode_params::<SgdParams>(&component, params)?)?),
        "adam" => Box::new(Adam::new(decode_params::<AdamParams>(&component, params)?)?),
        "adamw" => Box::new(AdamW::new(decode_params::<AdamWParams>(
            &component, params,
        )?)?),
        "rmsprop" => Box::new(RmsProp::new(decode_params::<RmsPropParams>(
            &component, params,
        )?)?),
        _ => {
            return Err(NasError::UnknownComponent {
                kind: ComponentKind::Optimizer.to_string(),
                name: name.to_string(),
                known: OPTIMIZER_NAMES.join(", "),
            })
        }
    })
}

/// What `nas list` / `nas describe` show about each optimizer, sorted by name.
pub fn optimizer_infos() -> Vec<ComponentInfo> {
    vec![
        info(
            "adam",
            "Adam with coupled L2 weight decay (Kingma & Ba 2015; torch.optim.Adam)",
            AdamParams::default(),
            AdamParams::docs(),
        ),
        info(
            "adamw",
            "AdamW with decoupled weight decay (Loshchilov & Hutter 2019; torch.optim.AdamW)",
            AdamWParams::default(),
            AdamWParams::docs(),
        ),
        info(
            "rmsprop",
            "RMSprop with PyTorch's defaults and semantics (torch.optim.RMSprop)",
            RmsPropParams::default(),
            RmsPropParams::docs(),
        ),
        info(
            "sgd",
            "SGD with momentum, Nesterov and coupled weight decay (torch.optim.SGD semantics)",
            SgdParams::default(),
            SgdParams::docs(),
        ),
    ]
}

pub(crate) fn component_info<T: Serialize>(
    kind: ComponentKind,
    name: &str,
    summary: &str,
    defaults: T,
    params: Vec<ParamDoc>,
) -> ComponentInfo {
    ComponentInfo {
        kind,
        name: name.into(),
        summary: summary.into(),
        defaults: serde_json::to_value(defaults).unwrap_or(serde_json::Value::Null),
        params,
        origin: "built-in".into(),
    }
}

fn info<T: Serialize>(
    name: &str,
    summary: &str,
    defaults: T,
    params: Vec<ParamDoc>,
) -> ComponentInfo {
    component_info(ComponentKind::Optimizer, name, summary, defaults, params)
}
