//! The built-in demo model: deterministic, offline, clearly labelled. It exists so that the whole
//! streaming path runs end to end on the embedded defaults, without any provider.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};

use super::{ChatModel, ChatRequest, LlmError, TokenStream};

pub struct DemoModel {
    /// Pause between words, so clients see a real stream.
    word_delay: Duration,
}

impl DemoModel {
    pub fn new(word_delay: Duration) -> Self {
        Self { word_delay }
    }

    /// The reply for a message: a fixed, helpful text that names itself as a demo.
    pub fn reply_for(message: &str) -> String {
        let topic: String = message
            .split_whitespace()
            .take(8)
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "[Demo model] Thank you for telling me about \"{topic}\". I am an automated demo \
             assistant, not a clinician. For most everyday symptoms, rest, fluids and simple \
             pain relief help, and a pharmacist can advise you. If your symptoms get worse, \
             or you are worried, contact your GP or call 111. If you think it is an \
             emergency, call 999."
        )
    }
}

impl ChatModel for DemoModel {
    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        let reply = Self::reply_for(request.last_user_text().unwrap_or_default());
        let delay = self.word_delay;
        let words: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
        async move {
            let stream = stream::iter(words).then(move |word| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(word)
            });
            Ok(Box::pin(stream) as TokenStream)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatTurn, Role};

    #[tokio::test]
    async fn the_demo_streams_its_labelled_reply_word_by_word() {
        let model = DemoModel::new(Duration::ZERO);
        let request = ChatRequest {
            turns: vec![ChatTurn {
                role: Role::User,
                content: "sore throat".into(),
            }],
        };
        let pieces: Vec<String> = model
            .stream(request)
            .await
            .expect("demo starts")
            .map(|piece| piece.expect("demo never fails"))
            .collect()
            .await;
        assert!(pieces.len() > 10);
        let whole = pieces.concat();
        assert!(whole.starts_with("[Demo model]"));
        assert!(whole.contains("sore throat"));
    }
}
