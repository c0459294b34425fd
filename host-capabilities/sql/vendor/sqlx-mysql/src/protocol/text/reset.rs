use crate::io::ProtocolEncode;
use crate::protocol::Capabilities;

// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_reset_connection.html
// (Warden patch: the session reset that pooled connections need.)

#[derive(Debug)]
pub(crate) struct ResetConnection;

impl ProtocolEncode<'_, Capabilities> for ResetConnection {
    fn encode_with(&self, buf: &mut Vec<u8>, _: Capabilities) -> Result<(), crate::Error> {
        buf.push(0x1f); // COM_RESET_CONNECTION
        Ok(())
    }
}
