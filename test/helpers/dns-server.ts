import dns2 from "dns2";

const { Packet } = dns2;

/** What the test zone answers for a name and type: records, or a failure of the server. */
export type ZoneAnswer = { txt?: string[]; cname?: string; mx?: string } | "servfail";

export interface TestDnsServer {
  /** `127.0.0.1:<port>`, for Resolver.setServers and `state.dnsServers`. */
  address: string;
  /** Names to answers; a name not here is NXDOMAIN. Change it while the server runs. */
  zone: Map<string, ZoneAnswer>;
  close(): Promise<void>;
}

/** A real DNS server on a loopback UDP port (dns2), answering from a zone the test edits. */
export async function startDnsServer(): Promise<TestDnsServer> {
  const zone = new Map<string, ZoneAnswer>();
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const question = request.questions[0];
      const answer = question ? zone.get(question.name.toLowerCase()) : undefined;
      if (!question || answer === undefined) {
        response.header.rcode = 3;
      } else if (answer === "servfail") {
        response.header.rcode = 2;
      } else {
        const record = (fields: Partial<dns2.Packet.Resource>) => Packet.createResourceFromQuestion(question, { ttl: 1, ...fields });
        if (question.type === Packet.TYPE.TXT) for (const data of answer.txt ?? []) response.answers.push(record({ data }));
        if (question.type === Packet.TYPE.CNAME && answer.cname) response.answers.push(record({ domain: answer.cname }));
        if (question.type === Packet.TYPE.MX && answer.mx) response.answers.push(record({ exchange: answer.mx, priority: 10 }));
      }
      send(response);
    },
  });
  const { udp } = await server.listen({ udp: { port: 0, address: "127.0.0.1" } });
  if (!udp) throw new Error("the DNS server did not bind UDP");
  const { port } = udp;
  return { address: `127.0.0.1:${port}`, zone, close: () => server.close() };
}
