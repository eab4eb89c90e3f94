//! The error collector: the macro reports every mistake of a spec at once.
//!
//! Parsing and validation push into one [`Errors`]; a value that failed to parse leaves
//! its key absent from the spec; so that one mistake gives one error, "missing ..." errors
//! found after a failed parse are counted (the model is still invalid) but not reported.

use proc_macro2::TokenStream;

/// Errors collected while parsing and validating.
#[derive(Default)]
pub struct Errors {
    list: Vec<syn::Error>,
    suppressed: usize,
    parse_failed: bool,
}

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        self.list.push(e);
    }

    /// An error about something absent, reported only if the parse went cleanly.
    pub fn missing(&mut self, e: syn::Error) {
        if self.parse_failed {
            self.suppressed += 1;
        } else {
            self.list.push(e);
        }
    }

    /// Marks the end of parsing: from here on, absences may be parse failures.
    pub fn end_parse(&mut self) {
        self.parse_failed = !self.list.is_empty();
    }

    /// Errors found so far, suppressed ones included.
    pub fn len(&self) -> usize {
        self.list.len() + self.suppressed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub fn into_vec(self) -> Vec<syn::Error> {
        self.list
    }

    /// Every reported error as one `compile_error!` sequence, in the order found.
    pub fn into_compile_error(self) -> TokenStream {
        let mut iter = self.list.into_iter();
        let Some(mut combined) = iter.next() else {
            return TokenStream::new();
        };
        for e in iter {
            combined.combine(e);
        }
        combined.into_compile_error()
    }
}
