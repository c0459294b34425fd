//! `warden run --invoke <export> --arg <json>`: calls any exported function,
//! converting JSON arguments to component values by the function's type.

use serde_json::{Map, Number, Value as Json};
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{ComponentExportIndex, Type, Val};

use crate::error::RunError;
use crate::module::{InstanceError, LoadedModule, Output, charge_output, export_func};

impl LoadedModule {
    /// Calls `export`, either `interface#func` (`warden:module/task#run`,
    /// version optional) or a bare function name looked up in every
    /// exported interface.
    pub async fn invoke(
        &self,
        export: &str,
        args: &[Json],
    ) -> Result<(Vec<Json>, Output), RunError> {
        let idx = self.invoke_export(export)?;
        let max_output = self.limits().max_output;
        self.with_instance(async |store, instance| {
            let func = instance
                .get_func(&mut *store, idx)
                .ok_or_else(|| RunError::Host(format!("export {export} is not a function")))?;
            let ty = func.ty(&*store);
            let params = json_params(&ty, args).map_err(RunError::Host)?;
            let mut results = vec![Val::Bool(false); ty.results().len()];
            func.call_async(&mut *store, &params, &mut results)
                .await
                .map_err(InstanceError::Call)?;
            charge_output(max_output, results.iter().map(val_size).sum())?;
            // A function returning `result` that returned `err` failed.
            if let [Val::Result(Err(payload))] = results.as_slice() {
                let detail = payload.as_deref().map_or(Json::Null, val_to_json);
                let detail = detail
                    .as_str()
                    .map_or_else(|| detail.to_string(), str::to_string);
                return Err(RunError::Failed(detail).into());
            }
            Ok(results.iter().map(val_to_json).collect())
        })
        .await
    }

    fn invoke_export(&self, export: &str) -> Result<ComponentExportIndex, RunError> {
        let mut known = self
            .invoke_exports
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(idx) = known.get(export) {
            return Ok(*idx);
        }
        let (iface, func_name) = self.find_export(export)?;
        let idx = match &iface {
            Some(i) => export_func(self.component(), self.shape(), i, &func_name),
            None => self.component().get_export_index(None, func_name.as_str()),
        }
        .ok_or_else(|| RunError::Host(format!("export {export} not found")))?;
        known.insert(export.to_string(), idx);
        Ok(idx)
    }

    fn find_export(&self, export: &str) -> Result<(Option<String>, String), RunError> {
        let exports = &self.shape().exports;
        if let Some((iface, func)) = export.split_once('#') {
            let full = exports
                .iter()
                .find(|e| *e == iface || crate::contract::unversioned(e) == iface)
                .ok_or_else(|| {
                    RunError::Host(format!(
                        "the component does not export {iface} (it exports: {})",
                        exports.join(", ")
                    ))
                })?;
            return Ok((Some(full.clone()), func.to_string()));
        }
        // A bare name: search exported interfaces, then top-level functions.
        for iface in exports {
            if self.exported_funcs(iface).iter().any(|f| f == export) {
                return Ok((Some(iface.clone()), export.to_string()));
            }
        }
        Ok((None, export.to_string()))
    }
}

fn json_params(ty: &ComponentFunc, args: &[Json]) -> Result<Vec<Val>, String> {
    let params: Vec<_> = ty.params().collect();
    if params.len() != args.len() {
        let names: Vec<_> = params.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "expected {} --arg values ({}), got {}",
            params.len(),
            names.join(", "),
            args.len()
        ));
    }
    params
        .iter()
        .zip(args)
        .map(|((name, ty), arg)| json_to_val(ty, arg).map_err(|e| format!("argument {name}: {e}")))
        .collect()
}

fn json_to_val(ty: &Type, v: &Json) -> Result<Val, String> {
    let int = |v: &Json| {
        v.as_i64()
            .ok_or_else(|| format!("expected an integer, got {v}"))
    };
    let uint = |v: &Json| {
        v.as_u64()
            .ok_or_else(|| format!("expected an unsigned integer, got {v}"))
    };
    let range = |e: std::num::TryFromIntError| format!("out of range: {e}");
    Ok(match ty {
        Type::Bool => Val::Bool(
            v.as_bool()
                .ok_or_else(|| format!("expected a bool, got {v}"))?,
        ),
        Type::S8 => Val::S8(int(v)?.try_into().map_err(range)?),
        Type::S16 => Val::S16(int(v)?.try_into().map_err(range)?),
        Type::S32 => Val::S32(int(v)?.try_into().map_err(range)?),
        Type::S64 => Val::S64(int(v)?),
        Type::U8 => Val::U8(uint(v)?.try_into().map_err(range)?),
        Type::U16 => Val::U16(uint(v)?.try_into().map_err(range)?),
        Type::U32 => Val::U32(uint(v)?.try_into().map_err(range)?),
        Type::U64 => Val::U64(uint(v)?),
        Type::Float32 => Val::Float32(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {v}"))? as f32,
        ),
        Type::Float64 => Val::Float64(
            v.as_f64()
                .ok_or_else(|| format!("expected a number, got {v}"))?,
        ),
        Type::Char => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a one-character string, got {v}"))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(format!("expected a one-character string, got {v}")),
            }
        }
        Type::String => Val::String(
            v.as_str()
                .ok_or_else(|| format!("expected a string, got {v}"))?
                .to_string(),
        ),
        Type::List(list) => {
            let items = v
                .as_array()
                .ok_or_else(|| format!("expected an array, got {v}"))?;
            let elem = list.ty();
            Val::List(
                items
                    .iter()
                    .map(|i| json_to_val(&elem, i))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Option(opt) => match v {
            Json::Null => Val::Option(None),
            other => Val::Option(Some(Box::new(json_to_val(&opt.ty(), other)?))),
        },
        Type::Record(rec) => {
            let obj = v
                .as_object()
                .ok_or_else(|| format!("expected an object, got {v}"))?;
            let mut fields = Vec::new();
            for field in rec.fields() {
                let value = obj.get(field.name).unwrap_or(&Json::Null);
                fields.push((
                    field.name.to_string(),
                    json_to_val(&field.ty, value).map_err(|e| format!("{}: {e}", field.name))?,
                ));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let items = v
                .as_array()
                .ok_or_else(|| format!("expected an array, got {v}"))?;
            let types: Vec<_> = tuple.types().collect();
            if items.len() != types.len() {
                return Err(format!(
                    "expected {} tuple items, got {}",
                    types.len(),
                    items.len()
                ));
            }
            Val::Tuple(
                types
                    .iter()
                    .zip(items)
                    .map(|(t, i)| json_to_val(t, i))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Enum(e) => {
            let name = v
                .as_str()
                .ok_or_else(|| format!("expected an enum name, got {v}"))?;
            if !e.names().any(|n| n == name) {
                return Err(format!(
                    "{name:?} is not one of {}",
                    e.names().collect::<Vec<_>>().join(", ")
                ));
            }
            Val::Enum(name.to_string())
        }
        Type::Result(r) => {
            let obj = v
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| format!("expected {{\"ok\": ...}} or {{\"err\": ...}}, got {v}"))?;
            let (key, inner) = obj.iter().next().expect("one entry");
            let payload = |t: Option<Type>| -> Result<Option<Box<Val>>, String> {
                t.map(|t| json_to_val(&t, inner).map(Box::new)).transpose()
            };
            match key.as_str() {
                "ok" => Val::Result(Ok(payload(r.ok())?)),
                "err" => Val::Result(Err(payload(r.err())?)),
                _ => return Err(format!("expected \"ok\" or \"err\", got {key:?}")),
            }
        }
        other => {
            return Err(format!(
                "arguments of type {other:?} cannot be given as JSON"
            ));
        }
    })
}

/// Bytes a returned value occupies, for the `max-output` cap.
fn val_size(v: &Val) -> usize {
    match v {
        Val::String(s) => s.len(),
        Val::List(items) | Val::Tuple(items) => {
            items.iter().map(val_size).sum::<usize>() + items.len()
        }
        Val::Record(fields) => fields.iter().map(|(n, v)| n.len() + val_size(v)).sum(),
        Val::Variant(_, Some(v))
        | Val::Option(Some(v))
        | Val::Result(Ok(Some(v)))
        | Val::Result(Err(Some(v))) => val_size(v),
        _ => 8,
    }
}

pub fn val_to_json(v: &Val) -> Json {
    match v {
        Val::Bool(b) => Json::Bool(*b),
        Val::S8(n) => Json::from(*n),
        Val::S16(n) => Json::from(*n),
        Val::S32(n) => Json::from(*n),
        Val::S64(n) => Json::from(*n),
        Val::U8(n) => Json::from(*n),
        Val::U16(n) => Json::from(*n),
        Val::U32(n) => Json::from(*n),
        Val::U64(n) => Json::from(*n),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Val::Char(c) => Json::String(c.to_string()),
        Val::String(s) => Json::String(s.clone()),
        Val::List(items) | Val::Tuple(items) => {
            Json::Array(items.iter().map(val_to_json).collect())
        }
        Val::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), val_to_json(v)))
                .collect(),
        ),
        Val::Variant(case, payload) => {
            let mut m = Map::new();
            m.insert(
                case.clone(),
                payload.as_deref().map_or(Json::Null, val_to_json),
            );
            Json::Object(m)
        }
        Val::Enum(name) => Json::String(name.clone()),
        Val::Option(o) => o.as_deref().map_or(Json::Null, val_to_json),
        Val::Result(r) => {
            let (key, payload) = match r {
                Ok(p) => ("ok", p),
                Err(p) => ("err", p),
            };
            let mut m = Map::new();
            m.insert(
                key.into(),
                payload.as_deref().map_or(Json::Null, val_to_json),
            );
            Json::Object(m)
        }
        Val::Flags(flags) => Json::Array(flags.iter().map(|f| Json::String(f.clone())).collect()),
        other => Json::String(format!("{other:?}")),
    }
}

impl LoadedModule {
    /// Function names exported by the interface `iface`.
    fn exported_funcs(&self, iface: &str) -> Vec<String> {
        let engine = self.engine();
        let ty = self.component().component_type();
        let Some(ComponentItem::ComponentInstance(inst)) = ty
            .exports(engine)
            .find(|(n, _)| *n == iface)
            .map(|(_, e)| e.ty)
        else {
            return Vec::new();
        };
        inst.exports(engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
            .map(|(n, _)| n.to_string())
            .collect()
    }
}
