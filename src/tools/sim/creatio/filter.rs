//! The part of OData 4's `$filter` language the Creatio simulator understands, parsed
//! into a tree and evaluated against a record: comparisons (`eq ne gt ge lt le`), `and`,
//! `or`, `not`, parentheses, the string functions `startswith`, `endswith`, `contains`,
//! and paths through a lookup (`Contact/Id`, `SysSettings/Code`, resolved by the store).
//! Literals: `'text'` (`''` is a quote), GUIDs, numbers, `true`/`false`/`null`, and
//! dates, as Creatio writes them.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(Operand, Op, Operand),
    Function(Function, Operand, Operand),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    StartsWith,
    EndsWith,
    Contains,
}

/// A column path (`Name`, `Contact/Id`) or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(String),
    Literal(Value),
}

/// Reads a column path of the record being tested (lookups resolved by the caller).
pub trait Columns {
    fn column(&self, path: &str) -> Value;
}

impl Filter {
    /// Whether the record passes.
    pub fn matches(&self, record: &dyn Columns) -> bool {
        match self {
            Filter::And(a, b) => a.matches(record) && b.matches(record),
            Filter::Or(a, b) => a.matches(record) || b.matches(record),
            Filter::Not(f) => !f.matches(record),
            Filter::Compare(a, op, b) => {
                let (a, b) = (a.value(record), b.value(record));
                match op {
                    Op::Eq => same(&a, &b),
                    Op::Ne => !same(&a, &b),
                    Op::Gt => order(&a, &b) == Some(Ordering::Greater),
                    Op::Ge => matches!(order(&a, &b), Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => order(&a, &b) == Some(Ordering::Less),
                    Op::Le => matches!(order(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                }
            }
            Filter::Function(f, a, b) => {
                let (Some(a), Some(b)) = (text(&a.value(record)), text(&b.value(record))) else {
                    return false;
                };
                // Creatio's database compares case-insensitively (SQL Server's default).
                let (a, b) = (a.to_lowercase(), b.to_lowercase());
                match f {
                    Function::StartsWith => a.starts_with(&b),
                    Function::EndsWith => a.ends_with(&b),
                    Function::Contains => a.contains(&b),
                }
            }
        }
    }
}

impl Operand {
    fn value(&self, record: &dyn Columns) -> Value {
        match self {
            Operand::Path(p) => record.column(p),
            Operand::Literal(v) => v.clone(),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Parses a `$filter` value; the error names what could not be read.
pub fn parse(input: &str) -> Result<Filter, String> {
    let tokens = tokenize(input)?;
    let mut p = Parser { tokens, at: 0 };
    let f = p.or()?;
    match p.peek() {
        None => Ok(f),
        Some(t) => Err(format!("unexpected {t:?} in $filter")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Text(String),
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string literal without its closing quote".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Text(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !matches!(chars[i], ' ' | '\t' | '(' | ')' | ',' | '\'') {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, want: Token) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!("expected {want:?} in $filter, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let f = self.or()?;
            self.expect(Token::Close)?;
            return Ok(f);
        }
        let function = match self.peek() {
            Some(Token::Word(w)) if self.tokens.get(self.at + 1) == Some(&Token::Open) => {
                match w.to_ascii_lowercase().as_str() {
                    "startswith" => Some(Function::StartsWith),
                    "endswith" => Some(Function::EndsWith),
                    "contains" => Some(Function::Contains),
                    other => return Err(format!("the function {other}() is not supported")),
                }
            }
            _ => None,
        };
        if let Some(function) = function {
            self.at += 2;
            let a = self.operand()?;
            self.expect(Token::Comma)?;
            let b = self.operand()?;
            self.expect(Token::Close)?;
            return Ok(Filter::Function(function, a, b));
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                other => return Err(format!("unknown operator {other:?} in $filter")),
            },
            other => return Err(format!("expected an operator in $filter, found {other:?}")),
        };
        let right = self.operand()?;
        Ok(Filter::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Token::Text(s)) => Ok(Operand::Literal(Value::String(s))),
            Some(Token::Word(w)) => Ok(word(&w)),
            other => Err(format!(
                "expected a column or a value in $filter, found {other:?}"
            )),
        }
    }
}

/// An unquoted word: a keyword literal, a number, a GUID or a date, else a column path.
fn word(w: &str) -> Operand {
    match w {
        "true" => return Operand::Literal(Value::Bool(true)),
        "false" => return Operand::Literal(Value::Bool(false)),
        "null" => return Operand::Literal(Value::Null),
        _ => {}
    }
    if let Ok(n) = w.parse::<i64>() {
        return Operand::Literal(Value::from(n));
    }
    if let Ok(n) = w.parse::<f64>() {
        return Operand::Literal(Value::from(n));
    }
    let looks_like_value = w.starts_with(|c: char| c.is_ascii_digit())
        || (w.len() == 36 && w.chars().filter(|c| *c == '-').count() == 4);
    if looks_like_value {
        Operand::Literal(Value::String(w.to_string()))
    } else {
        Operand::Path(w.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Record(Value);
    impl Columns for Record {
        fn column(&self, path: &str) -> Value {
            match path.split_once('/') {
                Some((nav, "Id")) => self.0[format!("{nav}Id")].clone(),
                _ => self.0[path].clone(),
            }
        }
    }

    fn test(filter: &str, record: Value) -> bool {
        parse(filter)
            .map_err(|e| format!("{filter}: {e}"))
            .map(|f| f.matches(&Record(record)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn startswith_of_a_reversed_number() {
        let r = json!({"SearchNumber": "76543216197"});
        assert!(test("startswith(SearchNumber,'7654321')", r.clone()));
        assert!(!test("startswith(SearchNumber,'7654322')", r));
    }

    #[test]
    fn guids_lookups_and_logic() {
        let id = "0f0e0d0c-0000-4000-8000-000000000001";
        let r = json!({"Id": id, "ContactId": id, "Active": true, "Type": 4, "Name": "O'Neil"});
        assert!(test(&format!("Id eq {id}"), r.clone()));
        assert!(test(
            &format!("Contact/Id eq {id} and Active eq true"),
            r.clone()
        ));
        assert!(test(
            "Type eq 4 and (Name eq 'x' or Name eq 'O''Neil')",
            r.clone()
        ));
        assert!(test("not (Type eq 5)", r.clone()));
        assert!(test("contains(Name,'neil')", r.clone()));
        assert!(!test("Type gt 4", r));
    }

    #[test]
    fn a_broken_filter_is_an_error_naming_it() {
        assert!(parse("startswith(SearchNumber,'12").is_err());
        assert!(parse("Name like 'x'").is_err_and(|e| e.contains("like")));
        assert!(parse("substringof('a',Name)").is_err_and(|e| e.contains("substringof")));
        assert!(parse("Name eq 'a' )").is_err());
    }
}
