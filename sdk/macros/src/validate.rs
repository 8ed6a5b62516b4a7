//! The rules a shared object's impl block must follow, each reported at the span where the user
//! can fix it. Every rule is checked and every violation reported, not only the first.

use std::collections::BTreeMap;

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{FnArg, Pat, ReturnType, Signature, Type};

use crate::names;
use crate::parse::{Errors, MethodsOptions, MutatingMethod, ObjectImpl};
use crate::types;

/// Checks the ids, the options and every method of `object`.
pub fn check(object: &ObjectImpl, options: &MethodsOptions, errors: &mut Errors) {
    check_retired(options, errors);
    check_ids(object, options, errors);
    check_struct_names(object, errors);
    for method in &object.methods {
        check_mutating_signature(method, errors);
    }
    for getter in &object.getters {
        check_getter(getter, errors);
    }
}

fn check_retired(options: &MethodsOptions, errors: &mut Errors) {
    let mut seen = Vec::with_capacity(options.retired.len());
    for retired in &options.retired {
        if retired.value == SCHEMA_METHOD_ID {
            errors.spanned(
                &retired.literal,
                "id 0 is reserved for the schema records of the object's log and was never a \
                 method id: it cannot be retired",
            );
        } else if seen.contains(&retired.value) {
            errors.spanned(
                &retired.literal,
                format!("id {} is listed twice in `retired`", retired.value),
            );
        }
        seen.push(retired.value);
    }
}

/// The id that `dsss::object::SCHEMA_METHOD_ID` reserves for schema records. The generated
/// code asserts at compile time that the two agree.
pub const SCHEMA_METHOD_ID: u32 = 0;

fn check_ids(object: &ObjectImpl, options: &MethodsOptions, errors: &mut Errors) {
    let mut owners: BTreeMap<u32, String> = BTreeMap::new();
    for method in &object.methods {
        let id = method.id.value;
        let name = method.signature.ident.unraw().to_string();
        if id == SCHEMA_METHOD_ID {
            errors.spanned(
                &method.id.literal,
                "method id 0 is reserved for the schema records of the object's log: mutating \
                 methods take ids from 1",
            );
            continue;
        }
        if options.retired.iter().any(|retired| retired.value == id) {
            errors.spanned(
                &method.id.literal,
                format!(
                    "method id {id} is retired (listed in `retired`): records in the object's \
                     log may still carry it, so it can never be used again; give `{name}` a \
                     new id"
                ),
            );
        }
        match owners.get(&id) {
            Some(owner) => errors.spanned(
                &method.id.literal,
                format!(
                    "method id {id} is already used by `{owner}`: every mutating method needs \
                     its own id"
                ),
            ),
            None => {
                owners.insert(id, name);
            }
        }
    }
}

/// Two methods whose names differ only in underscores (`set_seat`, `set__seat`) would get the
/// same arguments struct.
fn check_struct_names(object: &ObjectImpl, errors: &mut Errors) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for method in &object.methods {
        let ident = &method.signature.ident;
        let struct_name = names::arguments_struct(ident).to_string();
        let name = ident.unraw().to_string();
        match owners.get(&struct_name) {
            Some(owner) => errors.spanned(
                ident,
                format!(
                    "`{name}` and `{owner}` would both get the arguments struct `{struct_name}`: \
                     rename one of them"
                ),
            ),
            None => {
                owners.insert(struct_name, name);
            }
        }
    }
}

fn check_mutating_signature(method: &MutatingMethod, errors: &mut Errors) {
    let signature = &method.signature;
    let name = signature.ident.unraw().to_string();
    match signature.receiver() {
        None => errors.spanned(
            &signature.ident,
            format!(
                "`{name}` is marked #[mutate] but takes no `self`: a mutating method changes \
                 the object, so it takes `&mut self`"
            ),
        ),
        Some(receiver) if is_shared_reference(&receiver.ty) => errors.spanned(
            receiver,
            format!(
                "a #[mutate] method takes `&mut self`: it changes the object; a method that \
                     takes `&self` is a getter: remove #[mutate] from `{name}` and call it \
                     inside read(|object| ...)"
            ),
        ),
        Some(receiver) if !is_mutable_reference(&receiver.ty) => errors.spanned(
            receiver,
            "a #[mutate] method takes `&mut self`: it changes the object in place, in every \
             copy, and cannot consume or replace it",
        ),
        Some(_) => {}
    }
    if !signature.generics.params.is_empty() {
        errors.spanned(
            &signature.generics,
            "a mutating method cannot be generic: every copy decodes its arguments into one \
             concrete type",
        );
    } else if let Some(where_clause) = &signature.generics.where_clause {
        errors.spanned(
            where_clause,
            "a mutating method cannot have a where clause: every copy decodes its arguments \
             into one concrete type",
        );
    }
    if let Some(asyncness) = &signature.asyncness {
        errors.spanned(
            asyncness,
            "a mutating method cannot be async: every copy applies the calls one at a time, in \
             log order, each to completion",
        );
    }
    if let Some(unsafety) = &signature.unsafety {
        errors.spanned(
            unsafety,
            "a mutating method cannot be unsafe: every copy calls it from generated code with \
             arguments read from the log",
        );
    }
    if names::HANDLE_METHOD_NAMES.contains(&name.as_str()) {
        errors.spanned(
            &signature.ident,
            format!(
                "a mutating method cannot be named `{name}`: its handle method would hide \
                 `{name}` of the handle (reached through dsss::Object or a trait the handle \
                 implements); rename the method"
            ),
        );
    }
    check_arguments(signature, errors);
    if let ReturnType::Type(_, result) = &signature.output {
        check_owned(
            result,
            "the result of a mutating method is encoded and sent to its caller",
            errors,
        );
    }
}

fn check_arguments(signature: &Signature, errors: &mut Errors) {
    for input in &signature.inputs {
        let FnArg::Typed(argument) = input else {
            continue;
        };
        let plain = match &*argument.pat {
            Pat::Ident(binding) => binding.by_ref.is_none() && binding.subpat.is_none(),
            _ => false,
        };
        if !plain {
            errors.spanned(
                &argument.pat,
                "name each argument of a mutating method with a plain identifier, such as \
                 `player: String`: the name becomes a field of the method's arguments struct \
                 and part of its schema",
            );
        }
        check_owned(
            &argument.ty,
            "an argument of a mutating method is decoded from the object's log",
            errors,
        );
    }
}

fn check_owned(ty: &Type, role: &str, errors: &mut Errors) {
    if let Some(not_owned) = types::find_not_owned(ty) {
        errors.spanned(
            not_owned.span_tokens,
            format!(
                "{role}, so it must be an owned, concrete type; this is {}: {}",
                not_owned.reason, not_owned.instead
            ),
        );
    }
}

fn check_getter(signature: &Signature, errors: &mut Errors) {
    let Some(receiver) = signature.receiver() else {
        return;
    };
    if is_mutable_reference(&receiver.ty) {
        errors.spanned(
            receiver.to_token_stream(),
            format!(
                "getters take &self; mark mutating methods #[mutate(id = N)]: `{}` takes \
                 `&mut self`, so it changes the object, and every change must go through the \
                 log",
                signature.ident.unraw()
            ),
        );
    }
}

fn is_shared_reference(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference) if reference.mutability.is_none())
}

fn is_mutable_reference(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference) if reference.mutability.is_some())
}
