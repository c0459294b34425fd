//! A message handler: logs every event it is subscribed to (`[[subscribe]]`
//! in its manifest). Under `warden serve` its output goes to the server log.

use warden_sdk::Message;

struct EventLog;

impl warden_sdk::MessageHandler for EventLog {
    fn handle(message: Message) -> Result<(), String> {
        let from = message
            .headers
            .iter()
            .find(|(k, _)| k == "warden-from")
            .map_or("?", |(_, v)| v.as_str());
        println!(
            "event-log: {} from {from}: {}",
            message.topic,
            String::from_utf8_lossy(&message.payload)
        );
        Ok(())
    }
}

warden_sdk::export_message_handler!(EventLog);
