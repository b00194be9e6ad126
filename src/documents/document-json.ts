import * as Y from 'yjs'

/**
 * JSON of a document's top-level shared types, for the admin API. The server never learns which
 * type a client declared for each name, so the kind is read from the content: keyed entries only
 * make a Y.Map, string content a Y.Text, XML elements a Y.XmlFragment, anything else a Y.Array.
 * Works on a copy, so the live document's types are never fixed to a guess.
 */
export function documentToJson (state: Uint8Array): Record<string, unknown> {
  const copy = new Y.Doc()
  Y.applyUpdate(copy, state)
  const result: Record<string, unknown> = {}
  for (const name of [...copy.share.keys()]) {
    const type = copy.share.get(name)!
    result[name] = readType(copy, name, contentKind(type) ?? 'array')
  }
  copy.destroy()
  return result
}

export type ContentKind = 'map' | 'text' | 'xml' | 'array'

/**
 * What kind of shared type a top-level type is, read from its content (see above); null when it
 * holds nothing that tells (an empty type).
 */
export function contentKind (type: Y.AbstractType<any>): ContentKind | null {
  let item = type._start
  if (item === null) return type._map.size > 0 ? 'map' : null
  while (item !== null) {
    const content = item.content
    if (content instanceof Y.ContentString || content instanceof Y.ContentFormat || content instanceof Y.ContentEmbed) return 'text'
    if (content instanceof Y.ContentType) {
      const inner = content.type
      if (inner instanceof Y.XmlElement || inner instanceof Y.XmlText) return 'xml'
    }
    item = item.right
  }
  return 'array'
}

function readType (doc: Y.Doc, name: string, kind: ContentKind): unknown {
  switch (kind) {
    case 'map': return doc.getMap(name).toJSON()
    case 'text': return doc.getText(name).toString()
    case 'xml': return doc.getXmlFragment(name).toString()
    case 'array': return doc.getArray(name).toJSON()
  }
}
