//! Types as the macros see them: their canonical text for the schema, the rewrites that let a
//! type written in the user's module be used inside the generated arguments module, and the
//! search for borrowed types that cannot be decoded from the log.

use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    Expr, GenericArgument, Ident, Lifetime, Path, PathArguments, QSelf, ReturnType, Type,
    TypeParamBound,
};

/// The canonical text of a type, for example `Vec<(u32, String)>`.
///
/// The text is compared across builds to detect schema changes, so it must depend only on the
/// tokens the user wrote, never on how a proc_macro2 version spaces them: every construct is
/// written out here with one fixed spacing (`, ` between items, ` + ` between bounds, no
/// spaces inside brackets). Parentheses that only group a type are dropped, `Vec::<u8>` is
/// written `Vec<u8>`, and a trait object always carries `dyn`.
pub fn canonical(ty: &Type) -> String {
    let mut text = String::new();
    write_type(&mut text, ty);
    text
}

/// The canonical text of a method's result: `()` when it returns nothing.
pub fn canonical_result(output: &ReturnType) -> String {
    match output {
        ReturnType::Default => "()".to_string(),
        ReturnType::Type(_, ty) => canonical(ty),
    }
}

fn write_type(text: &mut String, ty: &Type) {
    match ty {
        Type::Array(array) => {
            text.push('[');
            write_type(text, &array.elem);
            text.push_str("; ");
            write_expression(text, &array.len);
            text.push(']');
        }
        Type::BareFn(function) => {
            if let Some(lifetimes) = &function.lifetimes {
                text.push_str("for<");
                let names: Vec<String> = lifetimes
                    .lifetimes
                    .iter()
                    .map(|parameter| tokens_text(parameter.to_token_stream()))
                    .collect();
                text.push_str(&names.join(", "));
                text.push_str("> ");
            }
            if function.unsafety.is_some() {
                text.push_str("unsafe ");
            }
            if let Some(abi) = &function.abi {
                text.push_str("extern ");
                if let Some(name) = &abi.name {
                    text.push_str(&name.to_token_stream().to_string());
                    text.push(' ');
                }
            }
            text.push_str("fn(");
            let mut first = true;
            for input in &function.inputs {
                separate(text, &mut first, ", ");
                if let Some((name, _)) = &input.name {
                    text.push_str(&name.to_string());
                    text.push_str(": ");
                }
                write_type(text, &input.ty);
            }
            if function.variadic.is_some() {
                separate(text, &mut first, ", ");
                text.push_str("...");
            }
            text.push(')');
            if let ReturnType::Type(_, output) = &function.output {
                text.push_str(" -> ");
                write_type(text, output);
            }
        }
        Type::Group(group) => write_type(text, &group.elem),
        Type::ImplTrait(implementation) => {
            text.push_str("impl ");
            write_bounds(text, implementation.bounds.iter());
        }
        Type::Infer(_) => text.push('_'),
        Type::Macro(invocation) => {
            write_path(text, &invocation.mac.path);
            text.push('!');
            let (open, close) = match invocation.mac.delimiter {
                syn::MacroDelimiter::Paren(_) => ('(', ')'),
                syn::MacroDelimiter::Brace(_) => ('{', '}'),
                syn::MacroDelimiter::Bracket(_) => ('[', ']'),
            };
            text.push(open);
            text.push_str(&tokens_text(invocation.mac.tokens.clone()));
            text.push(close);
        }
        Type::Never(_) => text.push('!'),
        Type::Paren(parenthesized) => match &*parenthesized.elem {
            // Only these need their parentheses to keep their meaning (`&(dyn A + B)`).
            inner @ (Type::TraitObject(_) | Type::ImplTrait(_) | Type::BareFn(_)) => {
                text.push('(');
                write_type(text, inner);
                text.push(')');
            }
            inner => write_type(text, inner),
        },
        Type::Path(path) => write_qualified_path(text, path.qself.as_ref(), &path.path),
        Type::Ptr(pointer) => {
            text.push_str(if pointer.mutability.is_some() {
                "*mut "
            } else {
                "*const "
            });
            write_type(text, &pointer.elem);
        }
        Type::Reference(reference) => {
            text.push('&');
            if let Some(lifetime) = &reference.lifetime {
                text.push_str(&lifetime.to_string());
                text.push(' ');
            }
            if reference.mutability.is_some() {
                text.push_str("mut ");
            }
            write_type(text, &reference.elem);
        }
        Type::Slice(slice) => {
            text.push('[');
            write_type(text, &slice.elem);
            text.push(']');
        }
        Type::TraitObject(object) => {
            text.push_str("dyn ");
            write_bounds(text, object.bounds.iter());
        }
        Type::Tuple(tuple) => {
            text.push('(');
            let mut first = true;
            for element in &tuple.elems {
                separate(text, &mut first, ", ");
                write_type(text, element);
            }
            if tuple.elems.len() == 1 {
                text.push(',');
            }
            text.push(')');
        }
        other => text.push_str(&tokens_text(other.to_token_stream())),
    }
}

fn write_qualified_path(text: &mut String, qself: Option<&QSelf>, path: &Path) {
    let Some(qself) = qself else {
        write_path(text, path);
        return;
    };
    text.push('<');
    write_type(text, &qself.ty);
    let trait_segments = qself.position.min(path.segments.len());
    if trait_segments > 0 {
        text.push_str(" as ");
        if path.leading_colon.is_some() {
            text.push_str("::");
        }
        write_segments(text, path.segments.iter().take(trait_segments));
    }
    text.push('>');
    for segment in path.segments.iter().skip(trait_segments) {
        text.push_str("::");
        write_segments(text, std::iter::once(segment));
    }
}

fn write_path(text: &mut String, path: &Path) {
    if path.leading_colon.is_some() {
        text.push_str("::");
    }
    write_segments(text, path.segments.iter());
}

fn write_segments<'a>(text: &mut String, segments: impl Iterator<Item = &'a syn::PathSegment>) {
    let mut first = true;
    for segment in segments {
        separate(text, &mut first, "::");
        text.push_str(&segment.ident.to_string());
        match &segment.arguments {
            PathArguments::None => {}
            PathArguments::AngleBracketed(arguments) => {
                text.push('<');
                let mut first_argument = true;
                for argument in &arguments.args {
                    separate(text, &mut first_argument, ", ");
                    write_generic_argument(text, argument);
                }
                text.push('>');
            }
            PathArguments::Parenthesized(arguments) => {
                text.push('(');
                let mut first_input = true;
                for input in &arguments.inputs {
                    separate(text, &mut first_input, ", ");
                    write_type(text, input);
                }
                text.push(')');
                if let ReturnType::Type(_, output) = &arguments.output {
                    text.push_str(" -> ");
                    write_type(text, output);
                }
            }
        }
    }
}

fn write_generic_argument(text: &mut String, argument: &GenericArgument) {
    match argument {
        GenericArgument::Lifetime(lifetime) => text.push_str(&lifetime.to_string()),
        GenericArgument::Type(ty) => write_type(text, ty),
        GenericArgument::Const(expression) => write_expression(text, expression),
        GenericArgument::AssocType(associated) => {
            text.push_str(&associated.ident.to_string());
            if let Some(generics) = &associated.generics {
                text.push_str(&tokens_text(generics.to_token_stream()));
            }
            text.push_str(" = ");
            write_type(text, &associated.ty);
        }
        GenericArgument::AssocConst(associated) => {
            text.push_str(&associated.ident.to_string());
            text.push_str(" = ");
            write_expression(text, &associated.value);
        }
        GenericArgument::Constraint(constraint) => {
            text.push_str(&constraint.ident.to_string());
            text.push_str(": ");
            write_bounds(text, constraint.bounds.iter());
        }
        other => text.push_str(&tokens_text(other.to_token_stream())),
    }
}

fn write_bounds<'a>(text: &mut String, bounds: impl Iterator<Item = &'a TypeParamBound>) {
    let mut first = true;
    for bound in bounds {
        separate(text, &mut first, " + ");
        match bound {
            TypeParamBound::Trait(trait_bound) => {
                let parenthesized = trait_bound.paren_token.is_some();
                if parenthesized {
                    text.push('(');
                }
                if let Some(lifetimes) = &trait_bound.lifetimes {
                    text.push_str(&tokens_text(lifetimes.to_token_stream()));
                    text.push(' ');
                }
                if let syn::TraitBoundModifier::Maybe(_) = trait_bound.modifier {
                    text.push('?');
                }
                write_path(text, &trait_bound.path);
                if parenthesized {
                    text.push(')');
                }
            }
            TypeParamBound::Lifetime(lifetime) => text.push_str(&lifetime.to_string()),
            other => text.push_str(&tokens_text(other.to_token_stream())),
        }
    }
}

fn write_expression(text: &mut String, expression: &Expr) {
    match expression {
        Expr::Lit(literal) => text.push_str(&tokens_text(literal.to_token_stream())),
        Expr::Path(path) => write_qualified_path(text, path.qself.as_ref(), &path.path),
        other => text.push_str(&tokens_text(other.to_token_stream())),
    }
}

fn separate(text: &mut String, first: &mut bool, separator: &str) {
    if !*first {
        text.push_str(separator);
    }
    *first = false;
}

/// Tokens the typed rendering does not cover (macro bodies, const expressions), written with
/// one space between tokens except after a joint punctuation character and inside brackets.
fn tokens_text(tokens: TokenStream) -> String {
    let mut text = String::new();
    write_tokens(&mut text, tokens);
    text
}

fn write_tokens(text: &mut String, tokens: TokenStream) {
    let mut glue = false;
    let mut first = true;
    for token in tokens {
        if !first && !glue {
            text.push(' ');
        }
        first = false;
        glue = false;
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                text.push_str(open);
                write_tokens(text, group.stream());
                text.push_str(close);
            }
            TokenTree::Punct(punct) => {
                text.push(punct.as_char());
                // A joint character belongs to a multi-character operator (`::`, `->`) or to
                // the lifetime that follows (`'a`), so nothing separates it from what follows.
                glue = punct.spacing() == Spacing::Joint;
            }
            TokenTree::Ident(ident) => text.push_str(&ident.to_string()),
            TokenTree::Literal(literal) => text.push_str(&literal.to_string()),
        }
    }
}

/// Replaces `Self` by `self_type` (which must already be usable where the result goes), so a
/// type written inside the impl block can be used outside it.
pub fn replace_self(ty: &Type, self_type: &Type) -> Type {
    let mut replaced = ty.clone();
    SelfReplacer { self_type }.visit_type_mut(&mut replaced);
    replaced
}

struct SelfReplacer<'a> {
    self_type: &'a Type,
}

impl VisitMut for SelfReplacer<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(path) = ty
            && path.qself.is_none()
            && path.path.leading_colon.is_none()
            && path
                .path
                .segments
                .first()
                .is_some_and(|segment| segment.ident == "Self")
        {
            if path.path.segments.len() == 1 {
                *ty = self.self_type.clone();
                return;
            }
            // `Self::Item` becomes `<Lobby>::Item`: the first segment moves into the
            // qualified self position.
            let rest: syn::punctuated::Punctuated<syn::PathSegment, syn::Token![::]> =
                path.path.segments.iter().skip(1).cloned().collect();
            path.qself = Some(QSelf {
                lt_token: Default::default(),
                ty: Box::new(self.self_type.clone()),
                position: 0,
                as_token: None,
                gt_token: Default::default(),
            });
            path.path.leading_colon = Some(Default::default());
            path.path.segments = rest;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// Rewrites a type written in the user's module so that it means the same inside the generated
/// arguments module, a child of that module which glob-imports its parent: `self::` becomes
/// `super::`, `super::` becomes `super::super::`, and a name that a generated struct would
/// shadow (an argument of type `Join` next to the struct `Join`) is reached through `super::`.
pub fn into_child_module(ty: &Type, shadowed: &[Ident]) -> Type {
    let mut moved = ty.clone();
    ChildModule { shadowed }.visit_type_mut(&mut moved);
    moved
}

struct ChildModule<'a> {
    shadowed: &'a [Ident],
}

impl VisitMut for ChildModule<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        syn::visit_mut::visit_type_mut(self, ty);
        // After the recursion, so that the `super` added here is not moved up once more.
        if let Type::Path(path) = ty
            && path.qself.is_none()
            && path.path.leading_colon.is_none()
            && let Some(first) = path.path.segments.first()
            && self.shadowed.contains(&first.ident)
        {
            let name = first.ident.clone();
            path.path
                .segments
                .insert(0, Ident::new("super", name.span()).into());
        }
    }

    fn visit_path_mut(&mut self, path: &mut Path) {
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first_mut()
        {
            if first.ident == "self" {
                first.ident = Ident::new("super", first.ident.span());
            } else if first.ident == "super" {
                let span = first.ident.span();
                path.segments.insert(0, Ident::new("super", span).into());
            }
        }
        syn::visit_mut::visit_path_mut(self, path);
    }
}

/// Why a type cannot be decoded into an owned value, and where.
pub struct NotOwned {
    /// The part of the type at fault.
    pub span_tokens: TokenStream,
    /// What is wrong with it.
    pub reason: &'static str,
    /// What to write instead.
    pub instead: &'static str,
}

/// The first part of `ty` that borrows (a reference or a lifetime other than `'static`) or is
/// not one concrete type (`impl Trait`).
pub fn find_not_owned(ty: &Type) -> Option<NotOwned> {
    let mut finder = NotOwnedFinder { found: None };
    finder.visit_type(ty);
    finder.found
}

struct NotOwnedFinder {
    found: Option<NotOwned>,
}

impl NotOwnedFinder {
    fn record(&mut self, tokens: TokenStream, reason: &'static str, instead: &'static str) {
        if self.found.is_none() {
            self.found = Some(NotOwned {
                span_tokens: tokens,
                reason,
                instead,
            });
        }
    }
}

impl<'ast> Visit<'ast> for NotOwnedFinder {
    fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
        self.record(
            reference.to_token_stream(),
            "a reference",
            "use an owned type (String for &str, Vec<T> for &[T])",
        );
    }

    fn visit_type_impl_trait(&mut self, implementation: &'ast syn::TypeImplTrait) {
        self.record(
            implementation.to_token_stream(),
            "an `impl Trait` type",
            "name the one concrete type (String for impl Into<String>)",
        );
    }

    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        if lifetime.ident != "static" {
            self.record(
                lifetime.to_token_stream(),
                "a borrowed type",
                "use an owned type, with no lifetime other than 'static",
            );
        }
    }
}

/// The span of a type, for assertions that must point at it.
pub fn span_of(ty: &Type) -> Span {
    syn::spanned::Spanned::span(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(source: &str) -> String {
        canonical(&syn::parse_str::<Type>(source).unwrap())
    }

    #[test]
    fn canonical_text_ignores_the_spacing_of_the_source() {
        assert_eq!(text("Vec < ( u32 ,String ) >"), "Vec<(u32, String)>");
        assert_eq!(
            text("std :: collections::BTreeMap<String,Vec<u8>>"),
            "std::collections::BTreeMap<String, Vec<u8>>"
        );
        assert_eq!(text("Result<u32 , LobbyFull>"), "Result<u32, LobbyFull>");
        assert_eq!(text("Vec::<u8>"), "Vec<u8>");
        assert_eq!(text("(u32,)"), "(u32,)");
        assert_eq!(text("( )"), "()");
        assert_eq!(text("(u32)"), "u32");
        assert_eq!(text("[u8 ;32]"), "[u8; 32]");
        assert_eq!(text("[ u8 ]"), "[u8]");
        assert_eq!(
            text("::core::option::Option<u8>"),
            "::core::option::Option<u8>"
        );
    }

    #[test]
    fn canonical_text_covers_less_common_types() {
        assert_eq!(
            text("<T as Iterator>::Item"),
            "<T as Iterator>::Item".to_string()
        );
        assert_eq!(
            text("Box<dyn Fn(u32)->u32+Send>"),
            "Box<dyn Fn(u32) -> u32 + Send>"
        );
        assert_eq!(text("& 'static str"), "&'static str");
        assert_eq!(text("&mut[u8]"), "&mut [u8]");
        assert_eq!(text("[u8; N * 2]"), "[u8; N * 2]");
        assert_eq!(text("Array<u8, { 3 }>"), "Array<u8, {3}>");
        assert_eq!(text("fn(u32 ,String)->bool"), "fn(u32, String) -> bool");
        assert_eq!(text("*const u8"), "*const u8");
        assert_eq!(text("my_type!( a , b )"), "my_type!(a , b)");
    }

    #[test]
    fn self_is_replaced_everywhere_in_a_type() {
        let self_type: Type = syn::parse_str("Lobby").unwrap();
        let ty: Type = syn::parse_str("Vec<(Self, Option<Self>)>").unwrap();
        assert_eq!(
            canonical(&replace_self(&ty, &self_type)),
            "Vec<(Lobby, Option<Lobby>)>"
        );
        let associated: Type = syn::parse_str("Self::Seat").unwrap();
        assert_eq!(
            canonical(&replace_self(&associated, &self_type)),
            "<Lobby>::Seat"
        );
    }

    #[test]
    fn relative_paths_move_one_module_down() {
        let shadowed = [Ident::new("Join", Span::call_site())];
        let moved = |source: &str| {
            canonical(&into_child_module(
                &syn::parse_str(source).unwrap(),
                &shadowed,
            ))
        };
        assert_eq!(moved("self::Seat"), "super::Seat");
        assert_eq!(moved("super::Seat"), "super::super::Seat");
        assert_eq!(moved("Vec<Join>"), "Vec<super::Join>");
        assert_eq!(moved("Vec<String>"), "Vec<String>");
        assert_eq!(moved("crate::Join"), "crate::Join");
        assert_eq!(
            moved("[self::Seat; self::SEATS]"),
            "[super::Seat; super::SEATS]"
        );
    }

    #[test]
    fn borrowed_types_are_found() {
        let reason =
            |source: &str| find_not_owned(&syn::parse_str(source).unwrap()).map(|n| n.reason);
        assert_eq!(reason("&str"), Some("a reference"));
        assert_eq!(reason("Vec<&'static str>"), Some("a reference"));
        assert_eq!(reason("Cow<'a, str>"), Some("a borrowed type"));
        assert_eq!(reason("Cow<'static, str>"), None);
        assert_eq!(reason("impl Into<String>"), Some("an `impl Trait` type"));
        assert_eq!(reason("Vec<(u32, String)>"), None);
    }
}
