//! Reading the input of `#[dsss::methods]`: its options, the impl block, and the
//! `#[mutate(...)]` attribute of each mutating method. Syntax errors are collected, not
//! returned one at a time, so that the user sees every mistake in one build.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Ident, ImplItem, ItemImpl, LitInt, LitStr, Meta, Path, Signature, Token, Type,
    Visibility,
};

/// The name of the attribute that marks a mutating method.
pub const MUTATE: &str = "mutate";

/// Errors found so far, combined into one `syn::Error` that reports each at its own span.
#[derive(Default)]
pub struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Adds an error spanned on `tokens`.
    pub fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The `compile_error!` invocations of every error, or nothing when there was none.
    pub fn into_compile_errors(self) -> Option<TokenStream> {
        self.combined.map(|error| error.to_compile_error())
    }
}

/// A method id as written, with its literal for spans.
pub struct MethodId {
    /// The id.
    pub value: u32,
    /// Where it was written.
    pub literal: LitInt,
}

/// The options of `#[dsss::methods(...)]`.
#[derive(Default)]
pub struct MethodsOptions {
    /// `retired = [3, 7]`: ids of methods removed for good.
    pub retired: Vec<MethodId>,
}

/// Which codec a method declares.
pub enum CodecChoice {
    /// `"postcard"`, or no `codec` option: `::dsss::Postcard`.
    Postcard,
    /// `"json"`: `::dsss::Json`.
    Json,
    /// A path to a type that implements `dsss::Codec`.
    Path(Path),
}

/// A method marked `#[mutate(id = N)]`.
pub struct MutatingMethod {
    /// The stable id.
    pub id: MethodId,
    /// The codec of its arguments and result.
    pub codec: CodecChoice,
    /// The method's signature as written.
    pub signature: Signature,
    /// The method's visibility, given to its handle method.
    pub visibility: Visibility,
    /// The method's `#[doc]` attributes, mirrored on its handle method.
    pub documentation: Vec<Attribute>,
}

/// An impl block that `#[dsss::methods]` can work with.
pub struct ObjectImpl {
    /// The impl block with the `#[mutate]` attributes removed: what is re-emitted.
    pub item: ItemImpl,
    /// The type the block implements.
    pub self_type: Type,
    /// The last segment of the type's path: `Lobby`.
    pub type_name: Ident,
    /// The mutating methods whose `#[mutate]` attribute could be read, in source order.
    pub methods: Vec<MutatingMethod>,
    /// The signatures of the methods without `#[mutate]`.
    pub getters: Vec<Signature>,
}

/// Reads `retired = [3, 7]`, the only option of `#[dsss::methods]`.
pub fn methods_options(attribute: TokenStream) -> syn::Result<MethodsOptions> {
    let mut options = MethodsOptions::default();
    let mut retired_seen = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("retired") {
            if retired_seen {
                return Err(meta.error("`retired` is given twice: list every retired id once"));
            }
            retired_seen = true;
            let value = meta.value()?;
            let content;
            syn::bracketed!(content in value);
            let literals = Punctuated::<LitInt, Token![,]>::parse_terminated(&content)?;
            for literal in literals {
                let value = literal.base10_parse::<u32>()?;
                options.retired.push(MethodId { value, literal });
            }
            Ok(())
        } else {
            Err(meta.error(
                "unknown option of #[dsss::methods]: the only option is `retired = [ids]`, \
                 the ids of methods removed for good",
            ))
        }
    });
    parser.parse2(attribute)?;
    Ok(options)
}

/// Splits an impl block into what `#[dsss::methods]` needs, reporting in `errors` what makes
/// it unusable. Returns the block (its `#[mutate]` attributes removed) as the error when it
/// does not even name one concrete type, so that nothing can be generated for it.
pub fn object_impl(mut item: ItemImpl, errors: &mut Errors) -> Result<ObjectImpl, Box<ItemImpl>> {
    let mut methods = Vec::new();
    let mut getters = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(function) = impl_item else {
            let misplaced = impl_item_attributes(impl_item)
                .map(take_mutate_attributes)
                .unwrap_or_default();
            for attribute in misplaced {
                errors.spanned(
                    attribute,
                    "#[mutate] marks methods: put it on a `fn` that takes `&mut self`",
                );
            }
            continue;
        };
        let mut attributes = take_mutate_attributes(&mut function.attrs).into_iter();
        let Some(attribute) = attributes.next() else {
            getters.push(function.sig.clone());
            continue;
        };
        for repeated in attributes {
            errors.spanned(
                repeated,
                "a method takes one #[mutate(...)] attribute: merge the options into the first",
            );
        }
        let Some((id, codec)) = mutate_options(&attribute, errors) else {
            continue;
        };
        methods.push(MutatingMethod {
            id,
            codec,
            signature: function.sig.clone(),
            visibility: function.vis.clone(),
            documentation: function
                .attrs
                .iter()
                .filter(|attribute| attribute.path().is_ident("doc"))
                .cloned()
                .collect(),
        });
    }

    if let Some((_, trait_path, _)) = &item.trait_ {
        errors.spanned(
            trait_path,
            "#[dsss::methods] goes on the type's own impl block (`impl Lobby { ... }`), not on \
             a trait impl: the mutating methods must be inherent methods of the type",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "a shared object's impl block cannot be generic: the schema in the object's log \
             names one concrete type",
        );
        return Err(Box::new(item));
    }
    let Some(type_name) = type_name(&item.self_ty) else {
        errors.spanned(
            &item.self_ty,
            "#[dsss::methods] needs the impl block of a named type without generic arguments, \
             such as `impl Lobby { ... }`",
        );
        return Err(Box::new(item));
    };
    Ok(ObjectImpl {
        self_type: (*item.self_ty).clone(),
        type_name,
        item,
        methods,
        getters,
    })
}

/// `Lobby` or `crate::game::Lobby`: the last segment, when no segment has generic arguments.
fn type_name(self_type: &Type) -> Option<Ident> {
    let Type::Path(path) = self_type else {
        return None;
    };
    if path.qself.is_some()
        || path
            .path
            .segments
            .iter()
            .any(|segment| !segment.arguments.is_none())
    {
        return None;
    }
    path.path
        .segments
        .last()
        .map(|segment| segment.ident.clone())
}

fn impl_item_attributes(item: &mut ImplItem) -> Option<&mut Vec<Attribute>> {
    match item {
        ImplItem::Const(constant) => Some(&mut constant.attrs),
        ImplItem::Fn(function) => Some(&mut function.attrs),
        ImplItem::Type(alias) => Some(&mut alias.attrs),
        ImplItem::Macro(invocation) => Some(&mut invocation.attrs),
        _ => None,
    }
}

fn take_mutate_attributes(attributes: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (mutate, others) = std::mem::take(attributes)
        .into_iter()
        .partition(|attribute| attribute.path().is_ident(MUTATE));
    *attributes = others;
    mutate
}

/// Reads `#[mutate(id = N, codec = ...)]`. Reports what is wrong and returns `None` when the
/// id is missing or an option cannot be read.
fn mutate_options(attribute: &Attribute, errors: &mut Errors) -> Option<(MethodId, CodecChoice)> {
    const MISSING_ID: &str = "#[mutate] needs the method's stable id: #[mutate(id = N)] with N \
                              from 1; the id is part of the log format and never changes";
    if let Meta::Path(_) = attribute.meta {
        errors.spanned(attribute, MISSING_ID);
        return None;
    }
    let mut id = None;
    let mut codec = None;
    let result = attribute.parse_nested_meta(|meta| {
        if meta.path.is_ident("id") {
            if id.is_some() {
                return Err(meta.error("`id` is given twice"));
            }
            let literal: LitInt = meta.value()?.parse()?;
            let value = literal.base10_parse::<u32>().map_err(|_| {
                syn::Error::new(
                    literal.span(),
                    "a method id is a whole number from 1 to 4294967295",
                )
            })?;
            id = Some(MethodId { value, literal });
            Ok(())
        } else if meta.path.is_ident("codec") {
            if codec.is_some() {
                return Err(meta.error("`codec` is given twice"));
            }
            let value = meta.value()?;
            codec = Some(if value.peek(LitStr) {
                codec_by_name(&value.parse::<LitStr>()?)?
            } else {
                CodecChoice::Path(value.parse::<Path>()?)
            });
            Ok(())
        } else {
            Err(meta.error(
                "unknown #[mutate] option: the options are `id = N` and `codec = \"postcard\"`, \
                 `codec = \"json\"` or `codec = path::ToYourCodec`",
            ))
        }
    });
    if let Err(error) = result {
        errors.push(error);
        return None;
    }
    let Some(id) = id else {
        errors.spanned(attribute, MISSING_ID);
        return None;
    };
    Some((id, codec.unwrap_or(CodecChoice::Postcard)))
}

fn codec_by_name(name: &LitStr) -> syn::Result<CodecChoice> {
    match name.value().as_str() {
        "postcard" => Ok(CodecChoice::Postcard),
        "json" => Ok(CodecChoice::Json),
        other => Err(syn::Error::new(
            name.span(),
            format!(
                "unknown codec \"{other}\": the built-in codecs are \"postcard\" (the default) \
                 and \"json\"; for your own, name the type that implements dsss::Codec: \
                 codec = path::ToYourCodec"
            ),
        )),
    }
}
