use symphony_engine::chat_prompt_with_tools;
use symphony_models::Model;
use symphony_types::{ChatMessage, ToolSpec};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model = Model::load(std::path::Path::new(&a[1])).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a[2]).unwrap()).unwrap();
    let messages: Vec<ChatMessage> = serde_json::from_value(v["messages"].clone()).unwrap();
    let tools: Vec<ToolSpec> = serde_json::from_value(v["tools"].clone()).unwrap_or_default();
    let t = chat_prompt_with_tools(&model, &messages, &tools).unwrap();
    println!("{}", model.tokenizer.decode(&t, true));
}
